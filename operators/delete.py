"""Delete a CSL run with its fields, views and files."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.runs.access import delete_csl_run
from . import common


class DeleteRun(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "delete_csl_run", "CSL: delete run", "Delete a CSL run: its fields, saved views, run record and files"
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.run_key_input(ctx, inputs):
            inputs.view(
                "warning",
                types.Warning(label="Deletes the run's fields, saved views, record and checkpoints; labels stay"),
            )
        return types.Property(inputs, view=types.View(label="CSL: delete run"))

    def execute(self, ctx):
        delete_csl_run(ctx.dataset, ctx.params["csl_field"])
        ctx.trigger("reload_dataset")
        return {"deleted": ctx.params["csl_field"]}

    def __call__(self, sample_collection, csl_field="csl"):
        """Deletes run ``csl_field`` from the collection's dataset."""
        return common.execute_twin(self, sample_collection, dict(csl_field=csl_field))
