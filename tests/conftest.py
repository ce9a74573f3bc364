"""Test session setup: an isolated database and file area, and a small real
dataset audited once for the tests that only read results."""

import os
import tempfile

_WORK = tempfile.mkdtemp(prefix="fcsl-pytest-")
os.environ.setdefault("FIFTYONE_DATABASE_DIR", os.path.join(_WORK, "db"))
os.environ.setdefault("FIFTYONE_CSL_DIR", os.path.join(_WORK, "csl"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
# FiftyOne finds the plugin (this repository) through a plugins directory
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.makedirs(os.path.join(_WORK, "plugins"))
os.symlink(ROOT, os.path.join(_WORK, "plugins", "fiftyone-csl"))
os.environ["FIFTYONE_PLUGINS_DIR"] = os.path.join(_WORK, "plugins")

import pytest  # noqa: E402
from _common import FAST, SMALL  # noqa: E402


@pytest.fixture(scope="session")
def small_demo():
    from fiftyone_csl.plugin.demo import build_demo_dataset

    return build_demo_dataset("pytest-small-demo", overwrite=True, **SMALL)


@pytest.fixture(scope="session")
def audited(small_demo):
    """The small demo audited once with the real backbone; the features are
    also stored as ``frames.emb`` for faster tests."""
    import fiftyone_csl as fcsl

    before = small_demo.values("frames.phase.label")
    results = fcsl.compute_csl(
        small_demo, "phase", store_embeddings_field="emb", peer_scores=["last_loss", "aum"], **FAST
    )
    return small_demo, results, before


@pytest.fixture()
def scratch(audited):
    """A fresh clone of the audited dataset (with ``frames.emb``), minus the run."""
    import fiftyone_csl as fcsl

    dataset = audited[0].clone()
    if "csl" in dataset.list_runs():
        dataset.delete_run("csl")
    for name in dataset.list_saved_views():
        dataset.delete_saved_view(name)
    for f in ("csl", "csl_last_loss", "csl_aum"):
        dataset.delete_frame_field(f)
    for f in ("csl_max", "csl_mean", "csl_errors"):
        dataset.delete_sample_field(f)
    yield dataset
    for key in fcsl.list_csl_runs(dataset):
        fcsl.delete_csl_run(dataset, key)
    dataset.delete()
