"""The run directory on disk: ``<root>/<dataset id>/<run key>/``, its
version and staging folders, and who owns them."""

import errno
import json
import os
import shutil
import tempfile
import time
import uuid

from ..core.errors import CSLError
from ..core.manifest import MANIFEST, Manifest
from ..core.utils import atomic_write_json, sha256_file
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
        if root is not None and (not isinstance(root, str) or not root or "\x00" in root):
            raise CSLError(f"run_dir must be a folder path; got {root!r}")
        root = os.path.abspath(os.path.expanduser(root)) if root else os.path.join(base_dir(), "runs")
        if os.path.dirname(root) == root:
            raise CSLError(f"run_dir {root!r} is a filesystem root; give a folder of its own")
        self.root = root
        self.dataset_id, self.run_key = dataset_id, run_key
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
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.key_dir)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise CSLError(f"cannot write run files under {self.key_dir}: {e}") from None

    def check_space(self, need: dict, hint: str = "") -> None:
        """Refuses, before any work, a run whose files (``need``: bytes by
        kind and ``"total"``, e.g. from ``stages.run_bytes``) would not fit
        on the disk of the run's folder, with a margin of 10% + 64 MiB."""
        self.check_writable()
        free = shutil.disk_usage(self.key_dir).free
        wanted = int(need["total"] * 1.1) + (64 << 20)
        if wanted > free:
            parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in need.items() if k != "total" and v)
            raise CSLError(
                f"run '{self.run_key}' needs about {human_bytes(wanted)} under {self.key_dir} ({parts}, with a margin) "
                f"but its disk has {human_bytes(free)} free: short by {human_bytes(wanted - free)}. "
                f"Free space, pass run_dir= on another disk{hint}"
            )

    def raise_if_full(self, error: BaseException) -> None:
        """Says, as a :class:`CSLError`, that ``error`` is a full disk (the
        staging folder is already removed; the current version is untouched)."""
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CSLError(
                f"the disk under {self.key_dir} filled up while run '{self.run_key}' was being written ({error}); "
                "the previous version, if any, is still the run: free space or pass "
                "run_dir= on another disk"
            ) from error

    def staging(self, name: str | None = None) -> str:
        """A new (or, for a named training staging, existing) folder beside
        the versions, with an owner file naming this process."""
        path = os.path.join(self.key_dir, name or f".staging-{uuid.uuid4().hex[:12]}")
        os.makedirs(path, exist_ok=True)
        atomic_write_json(os.path.join(path, OWNER), {"host": host_id(), "pid": os.getpid(), "time": time.time()})
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

    def cleanup(self, keep=(), known=None) -> None:
        """Removes what no live process uses in this run's folder: versions
        other than ``keep`` and staging whose owner is dead; only folders
        that are this run's (:meth:`owns`). Call under the dataset lock
        (commits create versions under it). ``known``: ``{version folder:
        sha256}`` of manifests verified as this run's when they were read."""
        keep = {os.path.abspath(k) for k in keep if k}
        if not self._real_folder():
            return
        for name in os.listdir(self.key_dir):
            path = os.path.join(self.key_dir, name)
            if path in keep or not self.owns(path, (known or {}).get(path)):
                continue
            if name.startswith("v") or _owner_dead(path, host_id()):
                shutil.rmtree(path, ignore_errors=True)

    def owns(self, path: str, sha256: str | None = None) -> bool:
        """Whether ``path`` (inside this run's folder) is a folder this run
        made: a real folder, not a symbolic link, that is a version whose
        manifest names this dataset and key, or a staging folder. A version
        whose manifest has ``sha256``, one verified as this run's when it was
        read, is not parsed again."""
        name = os.path.basename(path)
        if os.path.islink(path) or not os.path.isdir(path):
            return False
        if name.startswith(".staging-") or name.startswith(".train-"):
            return True
        if not name.startswith("v"):
            return False
        manifest = os.path.join(path, MANIFEST)
        if sha256 and os.path.isfile(manifest) and not os.path.islink(manifest) and sha256_file(manifest) == sha256:
            return True
        try:
            with open(manifest) as f:
                raw = json.load(f)
        except (OSError, ValueError):
            return False  # a version always has its manifest: this folder is not one of ours
        if not isinstance(raw, dict):
            return False
        return raw.get("dataset_id") in (self.dataset_id, None) and raw.get("run_key") in (self.run_key, None)

    def check_removable(self) -> None:
        """Raises :class:`CSLError` if the run's folder could not be removed
        safely (a symbolic link stands where its folders should be)."""
        self._real_folder()

    def _real_folder(self) -> bool:
        """Whether the run's folder exists as a real folder; a symbolic link at
        the dataset's or the run's folder raises: it was not made here."""
        for path in (os.path.dirname(self.key_dir), self.key_dir):
            if os.path.islink(path):
                raise CSLError(f"{path} is a symbolic link, which fiftyone-csl did not make; nothing was removed")
        return os.path.isdir(self.key_dir)

    def remove_all(self) -> None:
        """Removes the run's folder: every version and staging folder it
        owns, then the folder and its dataset's folder if nothing else is
        left in them. Anything else found there stays (and so does the folder)."""
        if not self._real_folder():
            return
        for name in os.listdir(self.key_dir):
            path = os.path.join(self.key_dir, name)
            if self.owns(path):
                shutil.rmtree(path)
        for folder in (self.key_dir, os.path.dirname(self.key_dir)):
            if os.path.isdir(folder) and not os.path.islink(folder) and not os.listdir(folder):
                os.rmdir(folder)


TRAJECTORIES = "trajectories"
"""The folder of a version that holds one trajectory file per video."""
ARRIVING = ".trajectories-new"
"""Where a version's own new trajectories wait while it adopts its predecessor's folder."""


def can_adopt(current: str) -> bool:
    """Whether version ``current``'s trajectories can move, as one folder,
    to the version that replaces it: a real folder, not a symbolic link."""
    return _real_dir(os.path.join(current, TRAJECTORIES)) and not os.path.islink(current)


def adoption(current: str, old: Manifest, new: Manifest) -> dict:
    """What a commit of manifest ``new`` over version ``current`` (manifest
    ``old``) moves: the folder, the trajectories of ``current`` that ``new``
    replaced (removed once the commit is done) and the new version's own
    (taken out again if the commit is rolled back)."""
    replaced = [rel for sid, rel in old.trajectories.items() if new.trajectories.get(sid) != rel]
    arrived = [rel for rel in new.trajectories.values() if rel not in old.files]
    return dict(current=current, replaced=replaced, arrived=arrived)


def adopt_trajectories(current: str, version: str) -> None:
    """Moves the trajectories folder of version ``current`` into ``version``
    (one rename, whatever the number of videos) and puts ``version``'s own
    new trajectories into it (their names are new: nothing of ``current`` is
    overwritten). Repeatable after a kill at any point; call under the
    dataset lock once the journal names ``version``."""
    old, mine, arriving = (os.path.join(current, TRAJECTORIES), os.path.join(version, TRAJECTORIES),
                           os.path.join(version, ARRIVING))  # fmt: skip
    if _real_dir(old) and not os.path.lexists(arriving):
        if _real_dir(mine):
            os.rename(mine, arriving)
        else:
            os.makedirs(arriving)
    if _real_dir(old) and not os.path.lexists(mine):
        os.rename(old, mine)
    if _real_dir(arriving) and _real_dir(mine):
        for name in os.listdir(arriving):
            os.replace(os.path.join(arriving, name), os.path.join(mine, name))
        os.rmdir(arriving)


def return_trajectories(current: str, version: str, arrived=()) -> None:
    """Undoes :func:`adopt_trajectories` for a commit that is rolled back:
    the folder returns to ``current``, without ``arrived`` (``version``'s
    new files, which ``current``'s manifest does not list)."""
    old, mine = os.path.join(current, TRAJECTORIES), os.path.join(version, TRAJECTORIES)
    if not os.path.lexists(old) and _real_dir(mine):
        os.rename(mine, old)
        remove_replaced(current, arrived, ())


def remove_replaced(version: str, relpaths, listed) -> None:
    """Removes from ``version`` the adopted trajectory files ``relpaths`` of
    the videos it scored again, unless its manifest (``listed``) holds them."""
    for rel in relpaths:
        if rel in listed or not rel.startswith(TRAJECTORIES + "/") or ".." in rel.split("/"):
            continue
        path = os.path.join(version, rel)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.remove(path)  # a symbolic link is removed, never followed


def _real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


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


def human_bytes(n: int) -> str:
    """``1.5 GB``-style sizes for messages."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
