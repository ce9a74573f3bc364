"""Small shared helpers: devices, hashing, seeding and staged progress."""

import contextlib
import hashlib
import json
import os
import random
import tempfile

import eta.core.utils as etau
import numpy as np
import torch

from .errors import CSLError


def resolve_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CSLError(f"device='{device}' was asked for but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", fsync: bool = False, **open_kwargs):
    """A file to write that appears at ``path`` only once complete.

    The temporary file is created exclusively (``tempfile.mkstemp``: a new
    name, ``O_EXCL``, mode 0600) in ``path``'s own folder, so a symbolic
    link planted beside the target is never followed and the final rename
    stays on one filesystem; the rename replaces ``path`` itself, not what
    a link at ``path`` points to. On any error the temporary file goes.
    """
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(fd, 0o666 & ~umask)  # the permissions a plain open() would give
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_save_npz(path: str, **arrays) -> None:
    """Writes an ``.npz`` so that readers never see a half-written file."""
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays)


def balanced_groups(sizes: dict, num_groups: int) -> list:
    """``{name: size}`` split into at most ``num_groups`` groups of about
    equal total size: largest first into the lightest group, ties by name,
    so the same input gives the same groups. Returns sorted lists of names."""
    groups = [[] for _ in range(max(1, min(num_groups, len(sizes))))]
    load = [0] * len(groups)
    for name, size in sorted(sizes.items(), key=lambda p: (-p[1], p[0])):
        k = load.index(min(load))
        groups[k].append(name)
        load[k] += size
    return [sorted(g) for g in groups]


def atomic_write_json(path: str, obj) -> None:
    """Writes JSON so that readers never see a half-written file."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=1, sort_keys=True)


class _ProgressState:
    """What a progress callback receives: mirrors FiftyOne's ProgressBar."""

    def __init__(self, progress: float, label: str, complete: bool):
        self.progress = progress
        self.label = label
        self.complete = complete


class StagedProgress:
    """Progress over named stages of unequal weight.

    ``progress`` follows FiftyOne's convention: None uses
    ``fo.config.show_progress_bars``, a bool turns console bars on or off, and
    a callable receives an object with ``progress`` (overall fraction in
    [0, 1]), ``label`` (the current stage) and ``complete`` after each step.
    """

    def __init__(self, progress=None, weights: dict | None = None):
        self._callback = progress if callable(progress) else None
        self._console = None if callable(progress) else progress
        self._weights = weights or {}
        total = sum(self._weights.values()) or 1.0
        self._fractions = {k: v / total for k, v in self._weights.items()}
        self._done = 0.0
        self._prefix = ""

    def stage(self, name: str, total: int, iters_str: str = "items"):
        return _Stage(self, self._prefix + name, total, iters_str)

    @contextlib.contextmanager
    def prefixed(self, prefix: str):
        """Stages opened inside are named ``prefix + name`` (own weights)."""
        self._prefix = prefix
        try:
            yield self
        finally:
            self._prefix = ""

    def _report(self, name, fraction_in_stage, complete=False):
        if self._callback is None:
            return
        overall = self._done + self._fractions.get(name, 0.0) * fraction_in_stage
        self._callback(_ProgressState(min(overall, 1.0), name, complete))

    def _finish(self, name):
        self._done += self._fractions.get(name, 0.0)
        self._report(name, 0.0, complete=self._done >= 1.0 - 1e-9)


def _console_bars(console) -> bool:
    """Console bars on or off: a bool as given; None follows FiftyOne's
    ``show_progress_bars`` setting as its environment gives it (default on)."""
    if isinstance(console, bool):
        return console
    return os.environ.get("FIFTYONE_SHOW_PROGRESS_BARS", "true").strip().lower() not in ("false", "0", "no")


class _Stage:
    def __init__(self, parent: StagedProgress, name: str, total: int, iters_str: str):
        self._parent = parent
        self._name = name
        self._total = max(int(total), 1)
        self._count = 0
        console = False if parent._callback is not None else parent._console
        self._bar = etau.ProgressBar(total=total, iters_str=iters_str, quiet=not _console_bars(console))

    def __enter__(self):
        self._bar.__enter__()
        self._parent._report(self._name, 0.0)
        return self

    def update(self, count: int = 1):
        self._count += count
        self._bar.update(count)
        self._parent._report(self._name, min(self._count / self._total, 1.0))

    def __exit__(self, *args):
        self._bar.__exit__(*args)
        if args[0] is None:
            self._parent._finish(self._name)
