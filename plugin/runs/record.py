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

import os
from dataclasses import dataclass, replace

from ..core.errors import CSLError
from ..core.manifest import METHOD, Manifest

# the FiftyOne plugin's name (fiftyone.yml); its operators are "<PLUGIN_NAME>/<operator name>"
PLUGIN_NAME = "@fiftyone-csl/csl"


# --- names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunNames:
    """Every name a run with key ``key`` writes."""

    key: str
    peer_scores: tuple = ()
    review: bool = False
    decisions: bool = False
    sparse: bool = False  # sparse labels: predictions on every frame
    decoded: bool = False  # the decoder's corrected labels and wrong-label probabilities

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
    def corrected_field(self):
        """Frame-level ``Classification``: the label the decoder proposes."""
        return f"{self.key}_corrected"

    @property
    def wrong_prob_field(self):
        """Frame-level float: the posterior probability that the given label is wrong."""
        return f"{self.key}_wrong_prob"

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
        if self.decoded:
            out += [self.corrected_field, self.wrong_prob_field]
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

    @staticmethod
    def decodes(key: str, fields) -> bool:
        """True if a run's recorded ``fields`` include the decoder's (runs of
        earlier versions have none)."""
        return f"{key}_corrected" in ((fields or {}).get("frames") or [])

    @classmethod
    def of(cls, config) -> "RunNames":
        """The names a registered run owns, from its run config."""
        features = getattr(config, "features", None) or {}
        return cls(
            config.csl_field, tuple(config.peer_scores or ()), bool(getattr(config, "review", None)),
            bool(getattr(config, "decisions", None)), bool(features.get("sparse_labels")),
            cls.decodes(config.csl_field, getattr(config, "fields", None)),
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


# --- the run directory ------------------------------------------------------------------------


# --- the FiftyOne run record ------------------------------------------------------------------


def dataset_title(samples) -> str:
    """How messages name a collection's dataset: the user's dataset, also
    for a clips, frames or patches view (whose own dataset is a generated one
    with a timestamped name)."""
    dataset = samples._dataset
    if getattr(dataset, "_is_generated", False):
        kind = "clips" if dataset._is_clips else "frames" if dataset._is_frames else "patches"
        return f"'{samples._root_dataset.name}' (through a {kind} view, which holds no runs of its own)"
    return f"'{dataset.name}'"


def list_csl_runs(samples) -> list:
    """The keys of the CSL runs on the collection's dataset."""
    dataset = samples._dataset
    return [k for k in dataset.list_runs() if getattr(dataset.get_run_info(k).config, "method", None) == METHOD]


def runs_owning(dataset, path: str) -> list:
    """The keys of the CSL runs on ``dataset`` that own the field ``path``
    (``frames.x`` or ``x``): the one check every writer outside a run makes."""
    return [k for k in list_csl_runs(dataset) if path in RunNames.of(get_run_config(dataset, k)).paths()]


def get_run_config(samples, csl_field: str):
    dataset = samples._dataset
    if csl_field not in list_csl_runs(dataset):
        raise CSLError(f"no CSL run '{csl_field}' on dataset {dataset_title(samples)}")
    return dataset.get_run_info(csl_field).config


def owned_by(dataset, config) -> bool:
    """True if the run's files belong to ``dataset`` (False on a clone that
    inherited another dataset's run record)."""
    return getattr(config, "dataset_id", None) == str(dataset._doc.id)


_LOOKED_AT = {}  # (run_dir, manifest sha256) -> Manifest given to read-only callers (load_manifest(cached=True))


def load_manifest(dataset, config, cached: bool = False, known=None) -> Manifest:
    """The verified manifest of a registered run on ``dataset``. ``cached``:
    a caller that only reads it (the App's panel, on every click) gets the
    one this process verified last for the same version, not parsed again;
    it must not change it. ``known``: ``(run_dir, sha256, manifest)`` that
    the same call verified before, returned while the run record still
    names that version (a manifest of 10,000 videos takes a tenth of a
    second to parse); else the manifest is read again."""
    if getattr(config, "manifest_sha256", None) is None:
        raise CSLError(
            f"run '{config.csl_field}' was made by an earlier version of fiftyone-csl, whose files cannot be "
            "verified: run it again with overwrite=True"
        )
    if not owned_by(dataset, config):
        raise CSLError(
            f"run '{config.csl_field}' on dataset {dataset_title(dataset)} was inherited from another dataset "
            f"(id {getattr(config, 'dataset_id', None)}), whose files it must not use: call "
            f"fcsl.copy_csl_run(dataset, '{config.csl_field}') to give this dataset its own copy, or run again"
        )
    key = (config.run_dir, config.manifest_sha256)
    if known is not None and tuple(known[:2]) == key and known[2].dataset_id == str(dataset._doc.id):
        return known[2]
    if cached and key in _LOOKED_AT:
        return _LOOKED_AT[key]
    manifest = Manifest.load(config.run_dir, config.manifest_sha256, str(dataset._doc.id), config.csl_field)
    if cached:
        while len(_LOOKED_AT) >= 4:  # a few runs' (a panel switches between them); older versions go
            _LOOKED_AT.pop(next(iter(_LOOKED_AT)))
        _LOOKED_AT[key] = manifest
    return manifest


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


def operator_uri(name: str) -> str:
    """The URI of this plugin's operator ``name``."""
    return f"{PLUGIN_NAME}/{name}"
