"""Budgeted frame selection for review (the APU method of Active Sparse
Labeling, NeurIPS 2022, with frames in place of pixels).

Reviewers cannot look at every frame. Each candidate frame gets

- an uncertainty ``U``: the mean over ``T`` stochastic passes of a trained
  checkpoint with dropout on (MC-dropout) of ``-log p`` of the class the pass
  predicts;
- a spread term ``D = 1 - max_s exp(-(f - s)^2 / (2 sigma^2))`` over the frames
  ``s`` of the same video already reviewed or selected (1 when there are
  none), so picks spread over time;

and the selection takes, one frame at a time across all videos, the frame
with the largest ``lambda * U + (1 - lambda) * D`` (both in [0, 1]),
re-scoring ``D`` in the picked video after each pick, until the budget is
spent. Mode ``"apu_csl"`` replaces ``U`` by a mix of ``U`` and the frame's
CSL, so frames the run already suspects come first.

Baselines for the review benchmark: ``"csl"`` (top-k CSL), ``"uncertainty"``
(top-k ``U``), ``"random"`` and ``"equidistant"`` (evenly spaced in every
video, in proportion to its length).
"""

import heapq
import numbers

import numpy as np
import torch

from ..audit.options import FeatureSpec
from ..audit.prepare import attach_features, check_collection, prepare
from ..core.checks import check_device, check_float, check_int
from ..core.errors import CSLError
from ..core.replay import build_run_head, load_state
from ..core.utils import StagedProgress, resolve_device
from ..runs import fields as fcfields
from ..runs import writeback
from ..runs.access import load_videos
from ..runs.record import RunNames, get_run_config, load_manifest, unowned_outputs

MODES = ("apu_csl", "apu", "csl", "uncertainty", "random", "equidistant")
NEEDS_UNCERTAINTY = ("apu_csl", "apu", "uncertainty")
NEEDS_CSL = ("apu_csl", "csl")


@torch.no_grad()
def mc_dropout_uncertainty(
    model: torch.nn.Module, features: np.ndarray, max_frames: int, passes: int = 10, device="cpu"
) -> np.ndarray:
    """Per-frame MC-dropout uncertainty (T,) of one video.

    ``passes`` forward passes with every dropout layer on (the heads have no
    batch norm, so train mode changes nothing else); per pass the ``-log``
    probability of that pass's predicted class; averaged over passes. The
    passes run together as one batch per window of ``max_frames``.
    """
    if passes < 1:
        raise CSLError(f"passes must be >= 1, not {passes}")
    model.train()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    out = []
    for start in range(0, len(x), max_frames):
        window = x[start : start + max_frames]
        log_probs = torch.log_softmax(model(window[None].expand(passes, -1, -1)).float(), dim=-1)
        out.append((-log_probs.max(dim=-1).values).mean(0))  # (L,)
    model.eval()
    return torch.cat(out).cpu().numpy().astype(np.float32)


def run_uncertainty(run_dir, manifest, sequences, device, passes: int = 10, seed: int = 51, progress_stage=None):
    """``{sample_id: U}`` under the last checkpoint of each video's own fold
    (a video in no fold: every fold's, averaged)."""
    torch.manual_seed(seed)
    route = manifest.fold_router()
    heads = {}

    def head(k):
        if k not in heads:
            model = build_run_head(manifest, device)
            model.load_state_dict(load_state(run_dir, manifest, manifest.checkpoints[k][-1], device))
            heads[k] = model
        return heads[k]

    out = {}
    for s in sequences:
        values = [
            mc_dropout_uncertainty(head(k), s.features, manifest.config["max_frames"], passes, device)
            for k in route(s.sample_id)
        ]
        out[s.sample_id] = np.mean(values, axis=0)
        if progress_stage is not None:
            progress_stage.update()
    return out


def resolve_budget(budget, unit: str, total: int) -> int:
    """Frames to select: ``budget`` frames, or ``budget`` percent of ``total``."""
    if unit not in ("frames", "percent"):
        raise CSLError(f"budget_unit must be 'frames' or 'percent', not {unit!r}")
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):  # True is not a budget of 1
        raise CSLError(f"budget must be a number, not {budget!r}")
    value = float(budget)
    if not value > 0:
        raise CSLError(f"budget must be > 0, not {budget}")
    if unit == "percent":
        if value > 100:
            raise CSLError(f"a budget of {value}% is more than every frame")
        value = round(total * value / 100.0)
    return int(min(max(value, 1), total))


def _unit_interval(values: dict) -> dict:
    """Min-max normalisation to [0, 1] over every frame of every video."""
    flat = np.concatenate(list(values.values())) if values else np.zeros(0)
    if flat.size == 0:
        return values
    low, high = float(flat.min()), float(flat.max())
    span = high - low
    return {k: (v - low) / span if span > 0 else np.zeros_like(v, dtype=np.float64) for k, v in values.items()}


def _proximity(frame_numbers: np.ndarray, anchors, sigma: float) -> np.ndarray:
    """max over ``anchors`` of the Gaussian of the distance, per frame."""
    out = np.zeros(len(frame_numbers))
    if sigma <= 0:
        for a in anchors:
            out[frame_numbers == a] = 1.0
        return out
    for a in anchors:
        out = np.maximum(out, np.exp(-((frame_numbers - a) ** 2) / (2.0 * sigma**2)))
    return out


def check_tag(tag) -> None:
    """A tag to put on the selected frames' videos: None or a non-empty string."""
    if tag is not None and (not isinstance(tag, str) or not tag):
        raise CSLError(f"tag must be a non-empty string; got {tag!r}")


def check_options(mode: str, lam: float, sigma: float, csl_weight: float) -> None:
    if mode not in MODES:
        raise CSLError(f"mode must be one of {MODES}, not {mode!r}")
    if not 0.0 <= lam <= 1.0:
        raise CSLError(f"lambda must be in [0, 1], not {lam}")
    if not 0.0 <= csl_weight <= 1.0:
        raise CSLError(f"csl_weight must be in [0, 1], not {csl_weight}")
    if sigma < 0:
        raise CSLError(f"sigma must be >= 0, not {sigma}")


def select_frames(
    frame_numbers: dict,
    budget: int,
    mode: str = "apu_csl",
    uncertainty: dict | None = None,
    csl: dict | None = None,
    lam: float = 0.5,
    sigma: float = 10.0,
    csl_weight: float = 0.5,
    reviewed: dict | None = None,
    seed: int = 51,
) -> list:
    """Picks ``budget`` frames across videos.

    Args:
        frame_numbers: ``{video: (T,) frame numbers}``, the candidates
        budget: frames to pick
        mode: one of :data:`MODES`
        uncertainty, csl: ``{video: (T,) values}`` aligned with
            ``frame_numbers`` (as the mode needs)
        lam: weight of the informativeness against the spread, in [0, 1]
        sigma: width in frames of the spread's Gaussian (0: no spreading)
        csl_weight: in ``"apu_csl"``, the share of CSL in the informativeness
        reviewed: ``{video: frame numbers}`` already reviewed: never picked
            again, and the spread starts from them
        seed: for ``"random"`` and ties

    Returns:
        ``[(video, frame_number), ...]`` in pick order (most urgent first)
    """
    check_options(mode, lam, sigma, csl_weight)
    if mode in NEEDS_UNCERTAINTY and uncertainty is None:
        raise CSLError(f"mode {mode!r} needs frame uncertainties")
    if mode in NEEDS_CSL and csl is None:
        raise CSLError(f"mode {mode!r} needs CSL scores")
    reviewed = {k: np.asarray(v) for k, v in (reviewed or {}).items()}
    videos = sorted(frame_numbers)
    numbers = {v: np.asarray(frame_numbers[v], dtype=np.float64) for v in videos}
    open_ = {v: ~np.isin(numbers[v], reviewed.get(v, [])) for v in videos}
    budget = int(min(budget, sum(int(o.sum()) for o in open_.values())))
    rng = np.random.default_rng(seed)
    if budget <= 0:
        return []

    if mode == "random":
        pool = [(v, i) for v in videos for i in np.flatnonzero(open_[v])]
        chosen = rng.choice(len(pool), size=budget, replace=False)
        return [(pool[j][0], int(numbers[pool[j][0]][pool[j][1]])) for j in chosen]
    if mode == "equidistant":
        return _equidistant(videos, numbers, open_, budget)
    if mode in ("csl", "uncertainty"):
        values = csl if mode == "csl" else uncertainty
        pool = [(float(values[v][i]), rng.random(), v, i) for v in videos for i in np.flatnonzero(open_[v])]
        pool.sort(key=lambda p: (-p[0], p[1]))
        return [(v, int(numbers[v][i])) for _, _, v, i in pool[:budget]]

    informative = _unit_interval({v: np.asarray(uncertainty[v], dtype=np.float64) for v in videos})
    if mode == "apu_csl":
        suspect = _unit_interval({v: np.asarray(csl[v], dtype=np.float64) for v in videos})
        informative = {v: (1 - csl_weight) * informative[v] + csl_weight * suspect[v] for v in videos}
    spread = {v: 1.0 - _proximity(numbers[v], reviewed.get(v, []), sigma) for v in videos}
    jitter = {v: rng.random(len(numbers[v])) * 1e-9 for v in videos}  # seeded tie-breaking

    def scores(v):
        s = lam * informative[v] + (1 - lam) * spread[v] + jitter[v]
        return np.where(open_[v], s, -np.inf)

    current = {v: scores(v) for v in videos}
    best = np.array([current[v].max() if len(current[v]) else -np.inf for v in videos])
    picks = []
    for _ in range(budget):
        j = int(np.argmax(best))
        v = videos[j]
        i = int(np.argmax(current[v]))
        picks.append((v, int(numbers[v][i])))
        open_[v][i] = False
        spread[v] = np.minimum(spread[v], 1.0 - _proximity(numbers[v], [numbers[v][i]], sigma))
        current[v] = scores(v)
        best[j] = current[v].max()
    return picks


def _equidistant(videos, numbers, open_, budget):
    """Evenly spaced open frames in every video, in proportion to its open
    frames: a video with nothing reviewed yet gets a regular grid; in one
    with reviewed frames each pick goes to the middle of the widest gap
    between reviewed or picked frames (so rounds of picks stay evenly spaced
    instead of piling up beside the earlier ones)."""
    sizes = np.array([int(open_[v].sum()) for v in videos], dtype=np.float64)
    share = budget * sizes / sizes.sum()
    counts = np.floor(share).astype(int)
    for j in np.argsort(-(share - counts), kind="stable")[: budget - counts.sum()]:
        counts[j] += 1
    picks = []
    for v, k in zip(videos, counts):
        idx = np.flatnonzero(open_[v])
        if k <= 0:
            continue
        if len(idx) == len(numbers[v]):
            positions = ((np.arange(k) + 0.5) * len(idx) / k).astype(int)
            picks.extend((v, int(numbers[v][idx[p]])) for p in positions)
        else:
            picks.extend((v, int(f)) for f in _fill_gaps(numbers[v], open_[v], k))
    # interleave videos so a partial review still covers many videos
    order = np.argsort([p[1] / max(numbers[p[0]].max(), 1) for p in picks], kind="stable")
    return [picks[i] for i in order]


def _fill_gaps(numbers: np.ndarray, open_: np.ndarray, k: int) -> list:
    """``k`` open frames, each the one nearest the middle of the widest gap
    between closed (reviewed or already picked) frames and the video's ends."""

    closed = numbers[~open_]
    edges = [numbers.min() - 1, *sorted(closed.tolist()), numbers.max() + 1]
    gaps = [(-(b - a), float(a), float(b)) for a, b in zip(edges[:-1], edges[1:]) if b - a > 1]
    heapq.heapify(gaps)
    available = open_.copy()
    picks = []
    while gaps and len(picks) < k:
        _, a, b = heapq.heappop(gaps)
        inside = np.flatnonzero(available & (numbers > a) & (numbers < b))
        if not inside.size:
            continue
        i = inside[np.argmin(np.abs(numbers[inside] - (a + b) / 2.0))]
        available[i] = False
        f = float(numbers[i])
        picks.append(numbers[i])
        for lo, hi in ((a, f), (f, b)):
            if hi - lo > 1:
                heapq.heappush(gaps, (-(hi - lo), lo, hi))
    return picks


# --- FiftyOne ------------------------------------------------------------------------


def select_frames_for_review(
    samples,
    csl_field: str = "csl",
    budget: float = 5.0,
    budget_unit: str = "percent",
    mode: str = "apu_csl",
    lam: float = 0.5,
    sigma: float = 10.0,
    passes: int = 10,
    csl_weight: float = 0.5,
    reviewed_field: str | None = None,
    tag: str | None = None,
    seed: int = 51,
    device: str = "auto",
    cache_dir: str | None = None,
    overwrite: bool = False,
    progress=None,
    exclude_labelled: bool = False,
) -> list:
    """Selects the frames of ``samples`` most worth a reviewer's time, within
    a budget, and writes them as a review queue of run ``csl_field``.

    Candidates are the run's scored frames. Writes
    ``frames.<csl_field>_review_priority`` (1 = review first, on the selected
    frames only), ``<csl_field>_review_first`` on videos (their most urgent
    frame's priority) and the saved view ``<csl_field>-review-queue`` (videos
    with selected frames, showing only those frames, most urgent first;
    frames covered by a review decision leave it). A new selection replaces
    the run's previous one.

    Args:
        samples: videos of a scored run (a Dataset or view)
        csl_field ("csl"): the run key
        budget (5.0): how many frames to select, in ``budget_unit``
        budget_unit ("percent"): ``"percent"`` of the candidate frames or
            ``"frames"``
        mode ("apu_csl"): ``"apu_csl"`` (uncertainty mixed with CSL, spread
            over time), ``"apu"`` (uncertainty, spread over time), ``"csl"``
            (top CSL), ``"uncertainty"`` (top uncertainty), ``"random"`` or
            ``"equidistant"``
        lam (0.5): weight of informativeness against spread, in [0, 1]
        sigma (10.0): width in frames of the spread's Gaussian
        passes (10): MC-dropout passes for the uncertainty
        csl_weight (0.5): share of CSL in the informativeness of ``"apu_csl"``
        reviewed_field (None): a frame-level field whose truthy frames were
            reviewed already: never selected, and the spread starts from them
        tag (None): also tag the labels of the selected frames (in the run's
            label field) and their videos with this tag
        seed (51): MC-dropout and tie-breaking
        device, cache_dir, progress: as in :func:`fiftyone_csl.compute_csl`
        overwrite (False): has no effect: a selection replaces only the run's
            own previous queue, never fields or views the run did not create
        exclude_labelled (False): choose frames to label instead: frames
            that carry a label are never selected and the spread starts from
            them (a run with ``sparse_labels``; see
            :func:`~fiftyone_csl.plugin.labelling.label_actively`)

    Returns:
        ``[(sample_id, frame_number), ...]``, most urgent first
    """

    check_collection(samples)
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
    manifest = load_manifest(dataset, config)
    lam, sigma = check_float("lam", lam), check_float("sigma", sigma)
    csl_weight, passes = check_float("csl_weight", csl_weight), check_int("passes", passes, 1)
    seed = check_int("seed", seed, 0)
    torch_device = resolve_device(check_device(device))
    check_options(mode, lam, sigma, csl_weight)
    if mode in NEEDS_CSL and config.state != "scored":
        raise CSLError(f"run '{csl_field}' has no CSL yet: replay its checkpoints first")
    owned = RunNames.of(config)
    names = owned.with_review()
    existing = unowned_outputs(dataset, names, owned)
    if existing:
        raise CSLError(f"{existing} exist and do not belong to run '{csl_field}'; nothing was written")
    frame_schema = dataset.get_frame_field_schema() or {}
    if reviewed_field is not None and reviewed_field.removeprefix("frames.") not in frame_schema:
        raise CSLError(f"reviewed_field: no frame field '{reviewed_field}'")
    check_tag(tag)

    progress = StagedProgress(progress, {"features": 4, "uncertainty": 2, "select": 1, "write": 1})
    spec = FeatureSpec.from_dict(manifest.features)
    prepared = prepare(samples, manifest.label_field, manifest.classes, spec, torch_device)
    frame_numbers = {s.sample_id: s.frame_numbers for s in prepared.sequences}
    k = resolve_budget(budget, budget_unit, sum(len(n) for n in frame_numbers.values()))
    csl = None
    if mode in NEEDS_CSL:
        videos = load_videos(samples, csl_field)
        missing = [sid for sid in frame_numbers if sid not in videos]
        if missing:
            raise CSLError(f"{len(missing)} video(s) have no CSL in run '{csl_field}': replay the run over them first")
        csl = {  # a video with no label yet (sparse labels) has no CSL: nothing there is suspect
            sid: fcfields.spread_to_labelled_frames(videos[sid].frame_numbers, videos[sid].scores["csl"], n)
            if len(videos[sid].frame_numbers)
            else np.zeros(len(n), dtype=np.float32)
            for sid, n in frame_numbers.items()
        }
    uncertainty = None
    if mode in NEEDS_UNCERTAINTY:
        attach_features(prepared, torch_device, cache_dir, progress)
        with progress.stage("uncertainty", len(prepared.sequences), "videos") as stage:
            uncertainty = run_uncertainty(
                config.run_dir, manifest, prepared.sequences, torch_device, passes, seed, stage
            )
    reviewed = None
    if reviewed_field is not None:
        name = reviewed_field.removeprefix("frames.")
        ids, numbers, flags = samples.values(["id", "frames.frame_number", f"frames.{name}"])
        reviewed = {sid: [n for n, f in zip(ns, fs) if f] for sid, ns, fs in zip(ids, numbers, flags)}
    if exclude_labelled:
        reviewed = reviewed or {}
        for s in prepared.sequences:
            done = s.frame_numbers if s.labelled is None else s.frame_numbers[s.labelled]
            reviewed[s.sample_id] = sorted({*reviewed.get(s.sample_id, []), *map(int, done)})
    with progress.stage("select", 1, "steps"):
        picks = select_frames(frame_numbers, k, mode, uncertainty, csl, lam, sigma, csl_weight, reviewed, seed)

    with progress.stage("write", 1, "steps"):
        review = dict(
            mode=mode, budget=k, lam=lam, sigma=sigma, passes=passes, csl_weight=csl_weight, tag=tag, seed=seed
        )
        description = (
            f"{len(picks)} frames to {'label' if exclude_labelled else 'review'} ({mode}), most urgent video first"
        )
        writeback.write_review_queue(dataset, csl_field, names, manifest.label_field, review, picks, description)
    return picks
