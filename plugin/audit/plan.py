"""Planning a training or audit call: every check and default, decided
before the first write or the first minute of work."""

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from ..core import flags as fcflags
from ..core import sequences as fcseq
from ..core import train as fctrain
from ..core.checks import (
    ScoringOptions,
    check_choice,
    check_device,
    check_identifier,
    check_simulation,
    check_threshold,
    make_train_config,
)
from ..core.errors import CSLError
from ..core.manifest import Manifest
from ..core.replay import PRECISIONS, autocast_context
from ..core.stages import ERROR_PROB, check_folds, check_peer_scores, run_bytes
from ..core.utils import resolve_device
from ..runs import fields as fcfields
from ..runs import labels as fclabels
from ..runs.record import METHOD, RunNames, existing_paths, unowned_outputs
from ..runs.store import RunStore
from .options import FeatureSpec
from .prepare import Prepared, check_collection, labelled_fractions, prepare


def _check_new_outputs(dataset, names: RunNames, protected: dict, overwrite: bool) -> None:
    """The run's outputs must not be a protected field (the label or
    embeddings field), and may replace only what an earlier run of this key
    owns, and only with ``overwrite``."""
    for what, path in protected.items():
        if path in names.paths():
            raise CSLError(f"csl_field '{names.key}' would write its scores into the {what} {path}; choose another")
    current = dataset.get_run_info(names.key).config if dataset.has_run(names.key) else None
    if current is not None:
        if getattr(current, "method", None) != METHOD:
            raise CSLError(f"run key '{names.key}' belongs to another kind of run; choose another csl_field")
        if not overwrite:
            raise CSLError(
                f"a CSL run '{names.key}' already exists; pass overwrite=True to replace it or choose another csl_field"
            )
    taken = unowned_outputs(dataset, names, RunNames.of(current) if current is not None else None)
    if taken:
        raise CSLError(
            f"csl_field '{names.key}' would write into {taken}, which no run of this key created; "
            "choose another csl_field (overwrite=True never replaces what the run does not own)"
        )


@dataclass
class TrainingPlan:
    """Everything a training call decided before any work."""

    names: RunNames
    store: RunStore
    prepared: Prepared
    config: object  # TrainConfig
    fold_members: list
    fold_classes: list
    warnings: list
    device: object
    label_field: str

    def fingerprint(self, dataset_id) -> str:
        """Identifies the call for resuming: same dataset, key, labels,
        classes, features and training settings give the same value."""
        digest = hashlib.sha256()
        head = [dataset_id, self.names.key, self.label_field, self.prepared.classes, self.prepared.spec.to_dict(),
                self.config.to_dict(), self.fold_members]  # fmt: skip
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        for s in self.prepared.sequences:
            digest.update(s.sample_id.encode())
            digest.update(np.ascontiguousarray(s.frame_numbers, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(s.labels, dtype=np.int64).tobytes())
            if s.labelled is not None:
                digest.update(np.ascontiguousarray(s.labelled, dtype=bool).tobytes())
            if self.prepared.spec.embeddings_field is not None:
                digest.update(np.ascontiguousarray(s.features, dtype=np.float32).tobytes())
        return digest.hexdigest()[:24]

    def new_manifest(self, dataset_id) -> Manifest:
        p = self.prepared
        manifest = Manifest(
            dataset_id, self.names.key, self.label_field, p.classes, p.in_dim, p.spec.to_dict(),
            self.config.to_dict(), self.fold_members, self.fold_classes,
        )  # fmt: skip
        if p.spec.sparse_labels:
            manifest.labelled_fraction = labelled_fractions(p.sequences)
        return manifest


def plan_training(
    samples, label_field, csl_field, spec, classes, train_kwargs, peer_scores, overwrite, run_dir, device, function,
    store_embeddings_field=None,
) -> TrainingPlan:  # fmt: skip
    """Every check of a training call, in order of cost; raises :class:`CSLError`."""
    check_collection(samples)
    dataset = samples._dataset
    check_identifier("csl_field", csl_field)
    config = make_train_config(function, **train_kwargs)
    device = resolve_device(check_device(device))
    if not isinstance(overwrite, bool):
        raise CSLError(f"overwrite must be True or False; got {overwrite!r}")
    if fclabels.label_field_kind(samples, label_field) != "frames" and "mistakenness" in peer_scores:
        raise CSLError("the 'mistakenness' peer needs a frame-level Classification label field")
    label_path = fcfields.label_path(dataset, label_field)
    protected = {"label field": label_path}
    if spec.embeddings_field is not None:
        protected["embeddings field"] = f"frames.{spec.embeddings_field}"
    if store_embeddings_field is not None:
        check_identifier("store_embeddings_field", store_embeddings_field)
        if spec.embeddings_field is not None:
            raise CSLError("store_embeddings_field only applies when a backbone computes the features")
        path = f"frames.{store_embeddings_field}"
        if path == label_path:
            raise CSLError(f"store_embeddings_field would replace the label field {label_path}")
        if existing_paths(dataset, [path]) and not overwrite:
            raise CSLError(f"{path} exists; pass overwrite=True to replace it")
        protected["embeddings field to store"] = path
    if spec.sparse_labels and "mistakenness" in peer_scores:
        raise CSLError("the 'mistakenness' peer needs every frame labelled; it does not apply with sparse_labels")
    if spec.sparse_labels and ERROR_PROB in peer_scores:
        raise CSLError("simulation needs every frame labelled; it does not apply with sparse_labels")
    names = RunNames(csl_field, tuple(peer_scores), sparse=spec.sparse_labels, decoded=True)
    _check_new_outputs(dataset, names, protected, overwrite)
    store = RunStore(str(dataset._doc.id), csl_field, run_dir)
    prepared = prepare(samples, label_field, classes, spec, device)
    # videos with no label yet train nothing: they are only replayed (predictions)
    labelled_ids = [s.sample_id for s in prepared.sequences if len(fcseq.given_labels(s))]
    fold_members = fctrain.assign_folds(labelled_ids, config.folds, config.seed, config.cross_fit)
    fold_classes, warnings = check_folds(prepared.sequences, fold_members, config, prepared.classes)
    store.check_writable()
    return TrainingPlan(names, store, prepared, config, fold_members, fold_classes, warnings, device, label_field)


SCORING_OPTIONS = ("threshold", "peer_scores", "precision", "store_embeddings_field", "simulation", "target_precision")


@dataclass
class AuditPlan:
    """A checked audit or training call: its training plan and the scoring
    options, decided before any work."""

    training: TrainingPlan
    score: bool
    threshold: object  # "auto" or a float
    threshold_value: float
    peer_scores: tuple
    precision: str
    simulation: bool
    target_precision: float
    store_embeddings_field: str | None
    cache_dir: str | None


def plan_audit(
    samples,
    label_field,
    csl_field,
    embeddings_field,
    score: bool,
    function: str,
    *,
    classes: list | None = None,
    backbone: str = FeatureSpec.backbone,
    backbone_weights: str | None = None,
    stride: int = FeatureSpec.stride,
    fps: float | None = None,
    backbone_runtime: str = FeatureSpec.backbone_runtime,
    sparse_labels: bool = False,
    threshold=ScoringOptions.threshold,
    peer_scores: list | tuple = ScoringOptions.peer_scores,
    device: str = "auto",
    precision: str = ScoringOptions.precision,
    simulation: bool = ScoringOptions.simulation,
    target_precision: float = ScoringOptions.target_precision,
    store_embeddings_field: str | None = None,
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    **train_kwargs,
) -> AuditPlan:
    """Every check of :func:`compute_csl` (``score``) or
    :func:`train_checkpoints`, with their defaults; raises :class:`CSLError`."""
    if not score:
        given = dict(threshold=threshold, peer_scores=peer_scores, precision=precision,
                     store_embeddings_field=store_embeddings_field, simulation=simulation,
                     target_precision=target_precision)  # fmt: skip
        defaults = dict(asdict(ScoringOptions()), store_embeddings_field=None)
        unknown = sorted(k for k in SCORING_OPTIONS if given[k] != defaults[k])
        if unknown:
            raise CSLError(f"{function}() scores nothing; it takes no {unknown}")
    peer_scores = check_peer_scores(peer_scores)
    threshold = check_threshold(threshold)
    check_choice("precision", precision, PRECISIONS)
    check_simulation(simulation, target_precision)
    outputs = [*peer_scores, ERROR_PROB] if simulation else peer_scores
    spec = FeatureSpec.make(embeddings_field, backbone, backbone_weights, stride, fps, backbone_runtime, sparse_labels)
    plan = plan_training(
        samples, label_field, csl_field, spec, classes, train_kwargs, outputs, overwrite, run_dir, device,
        function, store_embeddings_field,
    )  # fmt: skip
    autocast_context(plan.device, precision)  # an impossible precision fails before any work
    p = plan.prepared
    need = run_bytes(p.sequences, p.in_dim, len(p.classes), plan.config, len(plan.fold_members), score, simulation)
    hint = "" if plan.config.half_checkpoints else ", or half_checkpoints=True to halve the checkpoints"
    plan.store.check_space(need, hint)
    threshold_value = fcflags.resolve_threshold(threshold, len(plan.prepared.classes))
    return AuditPlan(plan, score, threshold, threshold_value, tuple(peer_scores), precision, simulation,
                     target_precision, store_embeddings_field, cache_dir)  # fmt: skip
