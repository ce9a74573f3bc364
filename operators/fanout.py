"""The operator that runs one part of an audit fanned out over FiftyOne
delegated workers (:func:`fiftyone_csl.plugin.fanout.queue_audit` queues
them; the part that finishes a stage queues the next)."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit import fanout
from . import common


class RunAuditPart(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="run_audit_part",
            label="CSL: audit part (queued by an audit over several workers)",
            unlisted=True,
            allow_immediate_execution=False,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("graph_id", required=True)
        inputs.str("stage", required=True)
        inputs.int("index", required=True)
        return types.Property(inputs)

    def execute(self, ctx):
        p = ctx.params
        following = fanout.run_part(
            ctx.target_view(), p["graph_id"], p["stage"], int(p["index"]), progress=common.progress_callback(ctx),
            delegation_target=ctx.request_params.get("delegation_target"),
        )  # fmt: skip
        return {"graph_id": p["graph_id"], "stage": p["stage"], "index": int(p["index"]), "queued_next": following}
