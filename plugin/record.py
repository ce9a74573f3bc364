"""The run record: the one owner of everything a run writes.

For a run key on a dataset this module holds

- every output name (:class:`RunNames`: frame and sample fields, saved
  views, the review queue's fields and view, the brain run of the
  mistakenness peer); nothing else builds them;
- the run directory (:class:`RunStore`): ``<root>/<dataset id>/<run key>/``
  under ``$FIFTYONE_CSL_DIR/runs`` (or a ``run_dir`` the user gives), holding
  one complete *version* of the run per folder; a new run, replay or
  overwrite is built in a staging folder beside it and becomes the current
  version in one step; staging left by dead processes is removed by the next
  commit, only inside this run's folder;
- the manifest (:class:`Manifest`): what the version holds (config, classes,
  folds, sha256 of every file) and whose it is (dataset id and run key); the
  FiftyOne run record keeps the manifest's own sha256, and it is verified
  before any use;
- the FiftyOne run record itself (:func:`get_run_config`, :func:`run_kwargs`).
"""

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace

from .locks import host_id, pid_alive
from .utils import CSLError, sha256_file

METHOD = "fiftyone-csl"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
OWNER = "owner.json"


# --- names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunNames:
    """Every name a run with key ``key`` writes."""

    key: str
    peer_scores: tuple = ()
    review: bool = False
    decisions: bool = False
    sparse: bool = False  # sparse labels: predictions on every frame

    def score_field(self, name: str) -> str:
        """``csl`` -> ``<key>``, ``csl_smooth`` -> ``<key>_smooth``, ``aum`` -> ``<key>_aum``."""
        return self.key if name == "csl" else f"{self.key}_{name.removeprefix('csl_')}"

    @property
    def max_field(self):
        return f"{self.key}_max"

    @property
    def mean_field(self):
        return f"{self.key}_mean"

    @property
    def errors_field(self):
        return f"{self.key}_errors"

    @property
    def predictions_field(self):
        return f"{self.key}_predictions"

    @property
    def propagated_field(self):
        """Frame-level ``Classification``: the predicted class of every
        sampled frame that carries no label (sparse labels)."""
        return f"{self.key}_propagated"

    @property
    def brain_key(self):
        return self.score_field("mistakenness")

    @property
    def review_priority_field(self):
        return f"{self.key}_review_priority"

    @property
    def review_first_field(self):
        return f"{self.key}_review_first"

    @property
    def ranked_view(self):
        return f"{self.key}-ranked"

    @property
    def suspect_frames_view(self):
        return f"{self.key}-suspect-frames"

    @property
    def suspect_clips_view(self):
        return f"{self.key}-suspect-clips"

    @property
    def review_view(self):
        return f"{self.key}-review-queue"

    @property
    def decisions_field(self):
        """Sample-level ``TemporalDetections``: one per review decision, with
        the labels it replaced (the history that undo restores)."""
        return f"{self.key}_decisions"

    @property
    def decision_frame_field(self):
        """Frame-level: the decision that covers the frame, if any."""
        return f"{self.key}_decision"

    def frame_fields(self) -> list:
        out = [self.score_field(n) for n in ["csl", *self.peer_scores]]
        if "mistakenness" in self.peer_scores or self.sparse:  # the brain scores predictions stored here
            out.append(self.predictions_field)
        if self.sparse:
            out.append(self.propagated_field)
        if self.review:
            out.append(self.review_priority_field)
        if self.decisions:
            out.append(self.decision_frame_field)
        return out

    def sample_fields(self) -> list:
        out = [self.max_field, self.mean_field, self.errors_field]
        if self.review:
            out.append(self.review_first_field)
        return out + [self.decisions_field] if self.decisions else out

    def fields(self) -> dict:
        """``{"frames": [...], "samples": [...]}``: every field the run writes."""
        return {"frames": self.frame_fields(), "samples": self.sample_fields()}

    def paths(self) -> list:
        """Every field as a FiftyOne path (``frames.x`` or ``x``)."""
        return [f"frames.{f}" for f in self.frame_fields()] + self.sample_fields()

    def views(self) -> list:
        out = [self.ranked_view, self.suspect_frames_view, self.suspect_clips_view]
        return out + [self.review_view] if self.review else out

    def with_review(self) -> "RunNames":
        return replace(self, review=True)

    def with_decisions(self) -> "RunNames":
        return replace(self, decisions=True)

    @classmethod
    def of(cls, config) -> "RunNames":
        """The names a registered run owns, from its run config."""
        features = getattr(config, "features", None) or {}
        return cls(
            config.csl_field, tuple(config.peer_scores or ()), bool(getattr(config, "review", None)),
            bool(getattr(config, "decisions", None)), bool(features.get("sparse_labels")),
        )  # fmt: skip


def existing_paths(dataset, paths) -> list:
    """Which of ``paths`` (``frames.x`` or ``x``) exist on ``dataset``."""
    frame_schema = dataset.get_frame_field_schema() or {}
    sample_schema = dataset.get_field_schema()
    return [p for p in paths if (p[7:] in frame_schema if p.startswith("frames.") else p in sample_schema)]


def unowned_outputs(dataset, names: RunNames, owner: RunNames | None) -> list:
    """The outputs named by ``names`` that exist on ``dataset`` but that
    ``owner`` (the names of the run that may replace them, or None) did not
    create: fields as paths, views as ``"saved view <name>"``."""
    owned_paths = set(owner.paths()) if owner is not None else set()
    owned_views = set(owner.views()) if owner is not None else set()
    taken = [p for p in existing_paths(dataset, names.paths()) if p not in owned_paths]
    saved = set(dataset.list_saved_views())
    return taken + [f"saved view {v}" for v in names.views() if v in saved and v not in owned_views]


# --- manifest ------------------------------------------------------------------------------


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
    seconds: float | None = None
    method: str = METHOD
    format: int = MANIFEST_FORMAT

    def save(self, run_dir: str) -> str:
        """Writes ``manifest.json`` atomically; returns its sha256."""
        path = os.path.join(run_dir, MANIFEST)
        tmp = path + f".tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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


# --- the run directory ------------------------------------------------------------------------


def base_dir() -> str:
    """Root of fiftyone-csl's files: ``$FIFTYONE_CSL_DIR`` if set, else
    ``csl/`` beside FiftyOne's config file (``~/.fiftyone/csl``)."""
    env = os.environ.get("FIFTYONE_CSL_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import fiftyone.core.config as focn

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


# --- the FiftyOne run record ------------------------------------------------------------------


def list_csl_runs(samples) -> list:
    """The keys of the CSL runs on the collection's dataset."""
    dataset = samples._dataset
    return [k for k in dataset.list_runs() if getattr(dataset.get_run_info(k).config, "method", None) == METHOD]


def get_run_config(samples, csl_field: str):
    dataset = samples._dataset
    if csl_field not in list_csl_runs(dataset):
        raise CSLError(f"no CSL run '{csl_field}' on dataset '{dataset.name}'")
    return dataset.get_run_info(csl_field).config


def owned_by(dataset, config) -> bool:
    """True if the run's files belong to ``dataset`` (False on a clone that
    inherited another dataset's run record)."""
    return getattr(config, "dataset_id", None) == str(dataset._doc.id)


def load_manifest(dataset, config) -> Manifest:
    """The verified manifest of a registered run on ``dataset``."""
    if getattr(config, "manifest_sha256", None) is None:
        raise CSLError(
            f"run '{config.csl_field}' was made by an earlier version of fiftyone-csl, whose files cannot be "
            "verified: run it again with overwrite=True"
        )
    if not owned_by(dataset, config):
        raise CSLError(
            f"run '{config.csl_field}' on dataset '{dataset.name}' was inherited from another dataset "
            f"(id {getattr(config, 'dataset_id', None)}), whose files it must not use: call "
            f"fcsl.copy_csl_run(dataset, '{config.csl_field}') to give this dataset its own copy, or run again"
        )
    return Manifest.load(
        config.run_dir, getattr(config, "manifest_sha256", None), str(dataset._doc.id), config.csl_field
    )


def run_kwargs(names: RunNames, state: str, version_dir: str, manifest_sha: str, manifest: Manifest, **extra) -> dict:
    """The keyword arguments of the FiftyOne run config of a run."""
    return dict(
        method=METHOD,
        state=state,
        csl_field=names.key,
        dataset_id=manifest.dataset_id,
        label_field=manifest.label_field,
        run_dir=os.path.abspath(version_dir),
        manifest_sha256=manifest_sha,
        classes=manifest.classes,
        peer_scores=list(names.peer_scores),
        fields=names.fields(),
        views=names.views(),
        features=manifest.features,
        train=manifest.config,
        **extra,
    )
