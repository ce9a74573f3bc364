"""The run directory on disk: ``<root>/<dataset id>/<run key>/``, its
version and staging folders, and who owns them."""

import json
import os
import shutil
import time
import uuid

from ..core.errors import CSLError
from ..core.manifest import Manifest
from .locks import host_id, pid_alive

OWNER = "owner.json"


def base_dir() -> str:
    """Root of fiftyone-csl's files: ``$FIFTYONE_CSL_DIR`` if set, else
    ``csl/`` beside FiftyOne's config file (``~/.fiftyone/csl``)."""
    env = os.environ.get("FIFTYONE_CSL_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import fiftyone.core.config as focn  # lazy: importing FiftyOne is slow

    return os.path.join(os.path.dirname(focn.locate_config()), "csl")


def default_cache_dir() -> str:
    return os.path.join(base_dir(), "features")


class RunStore:
    """The folder of one run key on one dataset: ``<root>/<dataset_id>/<run_key>``.

    Inside: version folders ``v<time>-<id>`` (complete runs, one of them
    current), and staging folders ``.staging-<token>`` or
    ``.train-<fingerprint>`` being built.
    """

    def __init__(self, dataset_id: str, run_key: str, root: str | None = None):
        root = os.path.abspath(os.path.expanduser(root)) if root else os.path.join(base_dir(), "runs")
        if os.path.dirname(root) == root:
            raise CSLError(f"run_dir {root!r} is a filesystem root; give a folder of its own")
        self.root = root
        self.key_dir = os.path.join(root, dataset_id, run_key)

    @classmethod
    def of(cls, config) -> "RunStore":
        """The store a registered run's current version lives in."""
        key_dir = os.path.dirname(os.path.abspath(config.run_dir))
        dataset_dir = os.path.dirname(key_dir)
        return cls(os.path.basename(dataset_dir), os.path.basename(key_dir), os.path.dirname(dataset_dir))

    def check_writable(self) -> None:
        """Creates the run's folder now, so an unusable ``run_dir`` fails before any work."""
        try:
            os.makedirs(self.key_dir, exist_ok=True)
            probe = os.path.join(self.key_dir, f".probe-{os.getpid()}")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            raise CSLError(f"cannot write run files under {self.key_dir}: {e}") from None

    def staging(self, name: str | None = None) -> str:
        """A new (or, for a named training staging, existing) folder beside
        the versions, with an owner file naming this process."""
        path = os.path.join(self.key_dir, name or f".staging-{uuid.uuid4().hex[:12]}")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, OWNER), "w") as f:
            json.dump({"host": host_id(), "pid": os.getpid(), "time": time.time()}, f)
        return path

    def promote(self, staging: str) -> str:
        """Renames a complete staging folder to a new version folder."""
        version = os.path.join(self.key_dir, f"v{time.time_ns():x}-{uuid.uuid4().hex[:6]}")
        owner = os.path.join(staging, OWNER)
        if os.path.exists(owner):
            os.remove(owner)
        os.rename(staging, version)
        return version

    def inherit(self, staging: str, current: str, manifest: "Manifest", keep) -> None:
        """Hard-links (or copies) the files of version ``current`` that
        ``keep(relpath)`` accepts into ``staging``; files are never changed
        in place, so a link is as safe as a copy."""
        for relpath in list(manifest.files):
            if not keep(relpath):
                continue
            src, dst = os.path.join(current, relpath), os.path.join(staging, relpath)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.exists(dst):
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

    def cleanup(self, keep=()) -> None:
        """Removes what no live process uses in this run's folder: versions
        other than ``keep`` and staging whose owner is dead. Call under the
        dataset lock (commits create versions under it)."""
        keep = {os.path.abspath(k) for k in keep if k}
        if not os.path.isdir(self.key_dir):
            return
        for name in os.listdir(self.key_dir):
            path = os.path.join(self.key_dir, name)
            if not os.path.isdir(path) or path in keep:
                continue
            if name.startswith("v"):
                dead = True
            elif name.startswith((".staging-", ".train-")):
                dead = _owner_dead(path, host_id())
            else:
                continue
            if dead:
                shutil.rmtree(path, ignore_errors=True)

    def remove_all(self) -> None:
        if os.path.isdir(self.key_dir):
            shutil.rmtree(self.key_dir)
        parent = os.path.dirname(self.key_dir)
        if os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


def _owner_dead(path: str, host: str, stale_seconds: float = 24 * 3600) -> bool:
    """A staging folder's owner is dead if it ran on this host and its
    process is gone, or if it was made on another host a day ago or more."""
    try:
        with open(os.path.join(path, OWNER)) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return time.time() - os.path.getmtime(path) > 60  # owner file never written
    if owner.get("host") == host:
        return not pid_alive(int(owner.get("pid", -1)))
    return time.time() - float(owner.get("time", 0)) > stale_seconds
