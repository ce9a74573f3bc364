"""What a step reads from FiftyOne before any work: the collection's kind,
the labels as sequences, and the frame features."""

from dataclasses import dataclass

import numpy as np

from ..core import sequences as fcseq
from ..core.errors import CSLError
from ..runs import labels as fclabels
from ..runs.store import default_cache_dir
from . import features as fcf
from .encoders import resolve_runtime
from .options import FeatureSpec


def check_collection(samples) -> None:
    """Refuses collections whose samples are not the dataset's own videos."""
    dataset = samples._dataset
    if dataset.media_type == "group" or samples._is_dynamic_groups:
        raise CSLError(
            "grouped collections are not supported: audit the video slice as a dataset of its own "
            "(e.g. dataset.select_group_slices('<video slice>').clone())"
        )
    if getattr(dataset, "_is_generated", False):
        raise CSLError(
            "this is a clips, frames or patches view, whose samples are not videos of the dataset: "
            "audit the source dataset or a view of its videos instead (e.g. view._root_dataset)"
        )
    if samples.media_type != "video":
        raise CSLError(f"fiftyone-csl audits videos; this collection's media type is '{samples.media_type}'")
    if not len(samples):
        raise CSLError("the collection has no videos")


@dataclass
class Prepared:
    """Labels (and later features) of the videos a step works on."""

    classes: list
    full_sequences: list  # every labelled frame
    sequences: list  # the frames of the models (stride grid); features attached later
    in_dim: int
    spec: FeatureSpec
    feature_stats: dict | None = None
    strides: list | None = None  # one per sequence (``fps`` gives each video its own)


def prepare(samples, label_field, classes, spec: FeatureSpec, device=None) -> Prepared:
    """Reads the labels and checks the features' source (vectors present and
    finite, or video files present and decodable, and with ``device`` the
    backbone's runtime installed for it)."""
    raw = fclabels.read_raw_labels(samples, label_field)
    classes = fcseq.resolve_classes(raw, classes)
    full = fcseq.build_sequences(raw, classes, keep_empty=spec.sparse_labels)  # sparse: every video
    if spec.embeddings_field is None:
        if device is not None:
            resolve_runtime(spec.backbone_runtime, device)
        fcf.check_video_files(full)
    strides = video_strides(samples, spec, full)
    if spec.sparse_labels:
        grids = sampled_frames(samples, spec, full, strides)
        if spec.embeddings_field is not None:
            check_labelled_frames_have_vectors(full, grids, strides, spec.embeddings_field)
        sequences = [fcseq.on_grid(s, grid, step) for s, grid, step in zip(full, grids, strides)]
    else:
        sequences = [fcseq.subsample(s, step) for s, step in zip(full, strides)]
    if spec.embeddings_field is not None:
        in_dim = fcf.read_embeddings(samples, spec.embeddings_field, sequences)
    else:
        in_dim = fcf.BACKBONES[spec.backbone].dim
    return Prepared(classes, full, sequences, in_dim, spec, strides=strides)


def video_strides(samples, spec: FeatureSpec, sequences: list) -> list:
    """Each video's frame stride: ``spec.stride``, or with ``spec.fps`` the
    stride of its frame rate (:meth:`FeatureSpec.stride_for`)."""
    rates = frame_rates(samples, sequences) if spec.fps is not None else [None] * len(sequences)
    return [spec.stride_for(rate) for rate in rates]


def check_labelled_frames_have_vectors(sequences: list, grids: list, strides: list, embeddings_field: str) -> None:
    """Sparse labels over an embeddings field: the frames scored are those that
    carry a vector, so a labelled frame (or, with a stride, the first frame of
    its stride cell) must carry one. Raises :class:`CSLError` naming them."""
    for s, grid, step in zip(sequences, grids, strides):
        numbers = np.asarray(s.frame_numbers, dtype=np.int64)
        starts = numbers - (numbers - 1) % step
        missing = numbers[~np.isin(starts, grid)]
        if len(missing):
            raise CSLError(
                f"frame(s) {missing[:5].tolist()}{' ...' if len(missing) > 5 else ''} of sample {s.sample_id} "
                f"({s.filepath}) carry a label but no '{embeddings_field}' embedding"
                + ("" if step == 1 else f" on the first frame of their stride-{step} cell")
                + f": compute '{embeddings_field}' on every labelled frame"
            )


def sampled_frames(samples, spec: FeatureSpec, sequences: list, strides: list) -> list:
    """Each video's frame numbers on its stride grid, labelled or not (sparse
    labels): with an embeddings field, its frames that carry a vector; else
    ``1, 1 + stride, ...`` up to the video's frame count
    (``metadata.total_frame_count`` where computed, else the file's)."""
    if spec.embeddings_field is not None:
        from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

        having = samples.match_frames(F(spec.embeddings_field) != None, omit_empty=False)  # noqa: E711
        ids, numbers = having.values(["id", "frames.frame_number"])
        known = {sid: np.asarray(sorted(fns or []), dtype=np.int64) for sid, fns in zip(ids, numbers)}
        out = []
        for s, step in zip(sequences, strides):
            fns = known.get(s.sample_id, np.zeros(0, np.int64))
            out.append(fns[(fns - 1) % step == 0])
        return out
    ids, counts = samples.values(["id", "metadata.total_frame_count"])
    known = {sid: int(n) for sid, n in zip(ids, counts) if n}
    return [
        np.arange(1, (known.get(s.sample_id) or fcf.stream_frame_count(s.filepath)) + 1, step, dtype=np.int64)
        for s, step in zip(sequences, strides)
    ]


def labelled_fractions(sequences: list) -> dict:
    """``{sample_id: share of the sampled frames that carry a label}``."""
    return {s.sample_id: 1.0 if s.labelled is None else round(float(np.mean(s.labelled)), 6) for s in sequences}


def frame_rates(samples, sequences: list) -> list:
    """Each video's frames per second: FiftyOne's metadata where computed,
    else the file's stream (read with PyAV); None where neither says."""
    ids, rates = samples.values(["id", "metadata.frame_rate"])
    known = {sid: rate for sid, rate in zip(ids, rates) if rate}
    return [float(known[s.sample_id]) if s.sample_id in known else fcf.stream_frame_rate(s.filepath) for s in sequences]


def attach_features(prepared: Prepared, device, cache_dir, progress) -> None:
    spec = prepared.spec
    if spec.embeddings_field is not None:
        with progress.stage("features", 1, "fields"):
            return
    stats = fcf.FeatureStats()
    with progress.stage("features", len(prepared.sequences), "videos") as stage:
        fcf.attach_backbone_features(
            prepared.sequences, spec.backbone, prepared.strides or spec.stride, device,
            cache_dir or default_cache_dir(), spec.backbone_weights, progress_stage=stage, stats=stats,
            runtime=spec.backbone_runtime,
        )  # fmt: skip
    prepared.feature_stats = stats.as_dict()
