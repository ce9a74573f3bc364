"""The manifest of a run version: what its folder holds (config, classes,
folds, sha256 of every file) and whose it is. Pure file format: no FiftyOne."""

import json
import os
from dataclasses import dataclass, field, fields, replace

from .errors import CSLError
from .utils import atomic_file, sha256_file

# the name every run of fiftyone-csl carries, in its manifest and its FiftyOne run config
METHOD = "fiftyone-csl"
MANIFEST = "manifest.json"


MANIFEST_FORMAT = 2


@dataclass
class Manifest:
    """What one version of a run holds, and whose it is.

    Attributes:
        dataset_id, run_key: the owner (None for runs over plain arrays)
        label_field: the labels it trained on
        classes: class names, in the order of the models' outputs
        in_dim: feature dimension
        features: the :class:`~fiftyone_csl.plugin.options.FeatureSpec` as a dict
        config: the :class:`~fiftyone_csl.plugin.train.TrainConfig` as a dict
        folds: sample ids of each fold
        fold_classes: class indices each fold's checkpoints trained on
        checkpoints: per fold, checkpoint paths (relative), oldest first
        trajectories: ``{sample_id: relative path}``
        files: ``{relative path: sha256}`` of every file above
        simulation: the report of the simulation beside the run, if any
        error_probs: ``{sample_id: relative path}`` of the simulation
            detector's per-frame error probabilities and kinds
        labelled_fraction: with sparse labels, ``{sample_id: share of the
            sampled frames that carry a label}``
        label_runs: ``{sample_id: [[class, length], ...]}``, the run-length
            code of each trajectory's given labels (the procedure the
            decoder learns; empty in runs of earlier versions, which flag by
            the CSL rules)
        label_fingerprints: ``{sample_id: digest}`` of every labelled frame
            of each scored video as read (``sequences.label_fingerprint``):
            what tells a changed video without opening its trajectory
            (empty in runs of earlier versions)
        second_round: what :mod:`~fiftyone_csl.plugin.core.rounds` decided
            and trained (``ran``, ``reason``, ``fit``, ``masked_frames``,
            ``mask_digest``, ``checkpoints`` per fold, ``trained``), or None
    """

    dataset_id: str | None
    run_key: str | None
    label_field: str | None
    classes: list
    in_dim: int
    features: dict
    config: dict
    folds: list
    fold_classes: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    trajectories: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    checkpoint_bytes_per_epoch: int = 0
    feature_stats: dict | None = None
    simulation: dict | None = None
    error_probs: dict = field(default_factory=dict)
    labelled_fraction: dict = field(default_factory=dict)
    label_runs: dict = field(default_factory=dict)
    label_fingerprints: dict = field(default_factory=dict)
    second_round: dict | None = None
    seconds: float | None = None
    method: str = METHOD
    format: int = MANIFEST_FORMAT

    def save(self, run_dir: str) -> str:
        """Writes ``manifest.json`` atomically; returns its sha256."""
        path = os.path.join(run_dir, MANIFEST)
        with atomic_file(path, fsync=True) as f:
            # the fields as they are (plain dicts and lists: ``asdict`` would deep-copy every per-video entry),
            # in one string (``json.dumps`` without indentation takes the C encoder; ``json.dump`` never does)
            f.write(json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True))
        return sha256_file(path)

    @classmethod
    def load(cls, run_dir: str, sha256: str | None = None, dataset_id=None, run_key=None) -> "Manifest":
        """Reads and verifies a manifest: its sha256 against the run record's
        (when given) and its owner against ``dataset_id``/``run_key``."""
        path = os.path.join(run_dir or "", MANIFEST)
        if not run_dir or not os.path.isfile(path):
            raise CSLError(f"no run manifest at {path}")
        if sha256 is not None and sha256_file(path) != sha256:
            raise CSLError(f"{path} does not match the sha256 in the run record; the run's files were altered")
        try:
            with open(path) as f:
                raw = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise CSLError(f"{path} is not a valid manifest: {e}") from None
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or raw.get("method") != METHOD:
            raise CSLError(f"{path} is not a fiftyone-csl manifest of format {MANIFEST_FORMAT}")
        names = {f.name for f in fields(cls)}
        try:
            manifest = cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as e:
            raise CSLError(f"{path} is not a valid manifest: {e}") from None
        for what, expected, found in (("dataset", dataset_id, manifest.dataset_id), ("run", run_key, manifest.run_key)):
            if expected is not None and found != expected:
                raise CSLError(f"{run_dir} belongs to {what} {found!r}, not {expected!r}; it is not this run's")
        return manifest

    def record_file(self, run_dir: str, relpath: str) -> None:
        self.files[relpath] = sha256_file(os.path.join(run_dir, relpath))

    def verified_path(self, run_dir: str, relpath: str) -> str:
        """Absolute path of ``relpath`` after checking its sha256; raises
        :class:`CSLError` on a missing, unknown or altered file."""
        expected = self.files.get(relpath)
        if expected is None:
            raise CSLError(f"{relpath} is not listed in the manifest of {run_dir}")
        path = os.path.join(run_dir, relpath)
        if not os.path.isfile(path):
            raise CSLError(f"{path} is listed in the manifest but missing")
        if sha256_file(path) != expected:
            raise CSLError(f"{path} does not match its sha256 in the manifest")
        return path

    def second_round_report(self) -> dict | None:
        """What the second round decided (``second_round`` without its
        checkpoints), or None."""
        return {k: v for k, v in (self.second_round or {}).items() if k != "checkpoints"} or None

    def second_round_view(self, trained: bool = True):
        """This manifest with the second round's checkpoints in place of the
        first's (the same ``files``), or None when the version has no second
        round (``trained``: or it is not finished)."""
        r = self.second_round
        if not r or not r.get("ran") or (trained and not r.get("trained")):
            return None
        return replace(self, checkpoints=r["checkpoints"])

    def fold_router(self):
        """For a sample id, the folds whose checkpoints score it: its own fold
        (models that never trained on it), or every fold for a video new since
        training (their results averaged)."""
        fold_of = {sid: k for k, members in enumerate(self.folds) for sid in members}
        every_fold = [k for k, c in enumerate(self.checkpoints) if c]
        return lambda sample_id: [fold_of[sample_id]] if sample_id in fold_of else every_fold

    def unseen_classes(self, folds) -> set:
        """Class indices that none of ``folds``' checkpoints trained on."""
        if not self.fold_classes:
            return set()
        seen = set().union(*(set(self.fold_classes[k]) for k in folds))
        return set(range(len(self.classes))) - seen

    def checkpoint_bytes(self, run_dir: str) -> int:
        """Mean size on disk of one epoch's checkpoints, summed over folds."""
        epochs = max((len(c) for c in self.checkpoints), default=0)
        if not epochs:
            return 0
        total = sum(os.path.getsize(os.path.join(run_dir, r)) for c in self.checkpoints for r in c)
        return int(round(total / epochs))
