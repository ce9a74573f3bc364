"""Replay a run's checkpoints over a view and write CSL, in one go or as
delegated shards that several workers run side by side."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.rescore import replay_checkpoints
from ..plugin.audit.shards import queue_replay_shards
from ..plugin.core.replay import PRECISIONS
from . import common


class ReplayCheckpoints(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "replay_checkpoints",
            "CSL: replay checkpoints",
            "Score frames with a trained run's checkpoints (videos new to the run too)",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs):
            common.target_inputs(ctx, inputs)
            common.peer_inputs(ctx, inputs)
            common.threshold_input(ctx, inputs)
            inputs.enum(
                "precision",
                list(PRECISIONS),
                default="auto",
                required=False,
                label="Precision (auto: float16 on CUDA, float32 on CPU)",
            )
            inputs.int(
                "shards",
                default=1,
                min=1,
                required=False,
                label="Shards",
                description=(
                    "More than 1 queues that many delegated replays over groups of videos, for several "
                    "workers (`fiftyone delegated launch`) sharing this database and the run directory"
                ),
            )
        common.scheduling_notice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: replay checkpoints"))

    def execute(self, ctx):
        p = ctx.params
        shards = int(p.get("shards") or 1)
        if shards > 1:
            queued = queue_replay_shards(
                ctx.target_view(),
                p["csl_field"],
                shards,
                delegation_target=ctx.request_params.get("delegation_target"),
                operator_uri=self.uri,
                **common.engine_params(p, ("peer_scores", "threshold", "precision")),
            )
            return {"run_key": p["csl_field"], "queued_shards": len(queued)}
        results = replay_checkpoints(
            ctx.target_view(),
            p["csl_field"],
            progress=common.progress_callback(ctx),
            **common.engine_params(p, ("peer_scores", "threshold", "precision")),
        )
        common.reload_if_immediate(ctx)
        return {"run_key": results.run_key, "videos": len(results.videos), "suspect_segments": len(results.segments())}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Run key")
        outputs.int("videos", label="Videos scored")
        outputs.int("suspect_segments", label="Suspect segments")
        outputs.int("queued_shards", label="Delegated shards queued")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", delegate=False, shards=1, **kwargs):
        """Replays the checkpoints of run ``csl_field`` over ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
            delegate (False): queue a delegated operation instead of running now
            shards (1): more than 1 queues that many delegated replays, each over
                a group of videos, for workers to run side by side; the result
                holds ``queued_shards``
            **kwargs: ``peer_scores``, ``threshold``, ``precision``
        """
        params = dict(csl_field=csl_field, shards=shards, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)
