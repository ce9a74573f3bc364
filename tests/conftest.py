"""Test session setup: a database server of the tests' own on a free port,
an isolated file area, and a small real dataset audited once for the tests
that only read results.

FiftyOne joins any FiftyOne database server already running on the machine
(an open App, say) unless it is given a URI, so the tests point
``FIFTYONE_DATABASE_URI`` at a port of their own and start the bundled
``mongod`` there before the first test that needs it; subprocesses the tests
start inherit it. Tests of the numeric core (``tests/core/``) and of the
house's shape (``test_layers.py``, ``test_docs.py``) need no database: a
run of only those starts none.
"""

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time

_WORK = tempfile.mkdtemp(prefix="fcsl-pytest-")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PORT = _free_port()
_MONGOD = []


def _start_mongod():
    spec = importlib.util.find_spec("fiftyone")  # without importing it: it would connect
    mongod = os.path.join(os.path.dirname(spec.origin), "db", "bin", "mongod")
    port = _PORT
    dbpath = os.path.join(_WORK, "db")
    os.makedirs(dbpath)
    log = open(os.path.join(_WORK, "mongod.log"), "w")
    proc = subprocess.Popen(
        [mongod, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1"], stdout=log, stderr=log
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the test mongod exited; see {log.name}") from None
            time.sleep(0.1)

    def stop():
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(_WORK, ignore_errors=True)

    atexit.register(stop)
    _MONGOD.append(proc)


atexit.register(shutil.rmtree, _WORK, True)
os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{_PORT}"
os.environ.setdefault("FIFTYONE_CSL_DIR", os.path.join(_WORK, "csl"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
# a crashed lock holder in a test is taken over after this many seconds
os.environ.setdefault("FIFTYONE_CSL_LOCK_TTL", "5")
# FiftyOne finds the plugin (this repository) through a plugins directory
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.makedirs(os.path.join(_WORK, "plugins"))
os.symlink(ROOT, os.path.join(_WORK, "plugins", "fiftyone-csl"))
os.environ["FIFTYONE_PLUGINS_DIR"] = os.path.join(_WORK, "plugins")

import pytest  # noqa: E402
from _common import FAST, SMALL  # noqa: E402

NO_DATABASE = ("test_layers.py", "test_docs.py")
# subprocesses (kills, two processes, workers), the App in Chromium, the
# wheel in a fresh venv, and runs that train twice (the simulation)
SLOW = ("test_app_browser.py", "test_concurrency.py", "test_delegated.py", "test_fanout.py", "test_faults.py",
        "test_packaging.py", "test_simulation.py", "test_stateful.py")  # fmt: skip


def _needs_database(item) -> bool:
    path = str(item.path)
    return not (os.sep + "core" + os.sep in path or os.path.basename(path) in NO_DATABASE)


def pytest_collection_modifyitems(items):
    for item in items:
        if _needs_database(item):
            item.add_marker(pytest.mark.database)
        if os.path.basename(str(item.path)) in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if _needs_database(item) and not _MONGOD:
        _start_mongod()


@pytest.fixture(scope="session")
def small_demo():
    from fiftyone_csl.plugin.audit.demo import build_demo_dataset

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
    owned = dataset.get_run_info("csl").config.fields
    dataset.delete_run("csl")
    for name in dataset.list_saved_views():
        dataset.delete_saved_view(name)
    for f in owned["frames"]:
        dataset.delete_frame_field(f)
    for f in owned["samples"]:
        dataset.delete_sample_field(f)
    dataset.reload()
    yield dataset
    for key in fcsl.list_csl_runs(dataset):
        fcsl.delete_csl_run(dataset, key)
    dataset.delete()
