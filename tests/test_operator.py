"""The plugin loads through FiftyOne and its operator runs the audit."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory):
    import fiftyone as fo

    parent = tmp_path_factory.mktemp("plugins")
    os.symlink(ROOT, parent / "fiftyone-csl")
    previous = fo.config.plugins_dir
    fo.config.plugins_dir = str(parent)
    yield parent
    fo.config.plugins_dir = previous


def test_audit_operator_is_registered_and_runs(plugins_dir, scratch):
    import fiftyone.operators as foo

    operator = foo.get_operator("@fiftyone-csl/csl/audit_video_labels")
    result = operator(scratch, "frames.phase", csl_field="op", embeddings_field="emb", epochs=5, folds=2)
    assert result.error is None, result.error_message
    assert result.result["run_key"] == "op"
    scratch.reload()
    assert scratch.count("frames.op") == scratch.count("frames.phase")
    assert "op-ranked" in scratch.list_saved_views()
