"""Run directories and manifests.

A run directory holds one folder per fold of per-epoch checkpoints, the loss
trajectories, and ``manifest.json``: the config, the class list, the fold
membership and the sha256 of every file. Nothing is loaded from a run
directory without checking it against the manifest.
"""

import contextlib
import fcntl
import json
import os
import re
import shutil

from .utils import CSLError, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def base_dir() -> str:
    """Root of fiftyone-csl's files: ``$FIFTYONE_CSL_DIR`` if set, else
    ``csl/`` beside FiftyOne's config file (``~/.fiftyone/csl``)."""
    env = os.environ.get("FIFTYONE_CSL_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import fiftyone.core.config as focn

    return os.path.join(os.path.dirname(focn.locate_config()), "csl")


def default_run_dir(dataset_name: str, run_key: str, root: str | None = None) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-") or "dataset"
    return os.path.join(root or base_dir(), "runs", slug, run_key)


def default_cache_dir(root: str | None = None) -> str:
    return os.path.join(root or base_dir(), "features")


def write_manifest(run_dir: str, manifest: dict) -> None:
    manifest = dict(manifest, format=MANIFEST_FORMAT)
    tmp = os.path.join(run_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(run_dir, MANIFEST))


def read_manifest(run_dir: str) -> dict:
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.isfile(path):
        raise CSLError(f"no run manifest at {path}")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CSLError(f"unsupported manifest format {manifest.get('format')} in {path}")
    return manifest


@contextlib.contextmanager
def run_lock(run_dir: str):
    """Exclusive lock on a run directory, across processes and machines.

    Replay shards hold it while they merge their entries into the manifest
    and write to the dataset, so concurrent workers never lose each other's
    writes. ``flock`` on a file in the run directory works on local disks
    and on NFSv4 shares.
    """
    with open(os.path.join(run_dir, ".lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def merge_into_manifest(run_dir: str, manifest: dict, relpaths: list, trajectories: dict) -> dict:
    """Adds ``trajectories`` (``{sample_id: relpath}``) and the sha256 of
    ``relpaths`` from ``manifest`` to the manifest on disk, keeping entries
    that other processes added meanwhile. Call under :func:`run_lock`.

    Returns the merged manifest.
    """
    merged = read_manifest(run_dir)
    for relpath in relpaths:
        merged.setdefault("files", {})[relpath] = manifest["files"][relpath]
    merged.setdefault("trajectories", {}).update(trajectories)
    write_manifest(run_dir, merged)
    return merged


def fold_router(manifest: dict):
    """A function giving, for a sample id, the folds whose checkpoints score
    it: its own fold (models that never trained on it), or every fold for a
    video new since training (their results averaged)."""
    fold_of = {sid: k for k, members in enumerate(manifest["folds"]) for sid in members}
    every_fold = [k for k, c in enumerate(manifest["checkpoints"]) if c]
    return lambda sample_id: [fold_of[sample_id]] if sample_id in fold_of else every_fold


def checkpoint_bytes_per_epoch(run_dir: str, manifest: dict) -> int:
    """Mean size on disk of one epoch's checkpoints, summed over folds."""
    checkpoints = manifest.get("checkpoints") or []
    epochs = max((len(c) for c in checkpoints), default=0)
    if not epochs:
        return 0
    total = sum(os.path.getsize(os.path.join(run_dir, r)) for c in checkpoints for r in c)
    return int(round(total / epochs))


def record_file(run_dir: str, manifest: dict, relpath: str) -> None:
    manifest.setdefault("files", {})[relpath] = sha256_file(os.path.join(run_dir, relpath))


def verified_path(run_dir: str, manifest: dict, relpath: str) -> str:
    """Absolute path of ``relpath`` after checking its sha256 against the
    manifest; raises :class:`CSLError` on a missing, unknown or altered file."""
    expected = manifest.get("files", {}).get(relpath)
    if expected is None:
        raise CSLError(f"{relpath} is not listed in the manifest of {run_dir}")
    path = os.path.join(run_dir, relpath)
    if not os.path.isfile(path):
        raise CSLError(f"{path} is listed in the manifest but missing")
    if sha256_file(path) != expected:
        raise CSLError(f"{path} does not match its sha256 in the manifest")
    return path


def remove_run_dir(run_dir: str) -> None:
    """Deletes a run directory, refusing paths that do not hold a manifest."""
    if not run_dir or not os.path.isdir(run_dir):
        return
    if not os.path.isfile(os.path.join(run_dir, MANIFEST)):
        raise CSLError(f"refusing to delete {run_dir}: it has no {MANIFEST}")
    shutil.rmtree(run_dir)
