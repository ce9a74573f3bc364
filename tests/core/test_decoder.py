"""The procedure model and the decoder over plain arrays: what the labels
should be, each suspect's kind and its per-frame fix, also for procedures
that are not a fixed chain (no database)."""

import numpy as np
import pytest
from fiftyone_csl.plugin.core import procedure as fcproc
from fiftyone_csl.plugin.core.edits import complete_swaps, decode_suspects
from hypothesis import given, settings
from hypothesis import strategies as st

C = 4
CLASSES = [f"p{i}" for i in range(C)]


def _probs(truth, sure=0.85, seed=0):
    """Class probabilities that point to ``truth`` (what out-of-fold models
    trained on mostly right labels give), with noise."""
    rng = np.random.default_rng(seed)
    p = np.full((len(truth), C), (1 - sure) / (C - 1))
    p[np.arange(len(truth)), truth] = sure
    p = p + rng.uniform(0, 0.05, p.shape)
    return p / p.sum(1, keepdims=True)


def _csl(probs, given):
    return -np.log(probs[np.arange(len(given)), given])


def _chain(lengths):
    return np.concatenate([np.full(n, c) for c, n in enumerate(lengths)])


def _suspects(given, truth, others, seed=0):
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(x) for x in [given, *others]], C)
    probs = _probs(truth, seed=seed)
    frames = np.arange(1, len(given) + 1)
    found, decoded, wrong, confidence = decode_suspects(
        "v", frames, given, _csl(probs, given), probs, counts, CLASSES, float(np.log(C))
    )
    return found, decoded, wrong


OTHERS = [_chain([10 + k, 12, 9 + k, 11]) for k in range(6)]


def test_leave_one_out_counts_are_the_other_videos():
    videos = [fcproc.label_runs(x) for x in OTHERS]
    every = fcproc.ProcedureCounts.of_runs(videos, C)
    rest = fcproc.ProcedureCounts.of_runs(videos[1:], C)
    alone = every.without(videos[0])
    for name in ("start", "end", "transitions", "frames", "runs"):
        assert np.array_equal(getattr(alone, name), getattr(rest, name)), name
    assert every.transitions[0, 1] == 6 and every.transitions[1, 0] == 0


def test_a_clean_video_has_no_suspect_and_a_low_wrong_probability():
    truth = _chain([12, 12, 12, 12])
    found, decoded, wrong = _suspects(truth, truth, OTHERS)
    assert found == [] and np.array_equal(decoded, truth)
    assert wrong.max() < 0.2


def test_a_mislabel_is_fixed_frame_by_frame_and_typed():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[3:8] = 2  # inside phase 0
    found, decoded, wrong = _suspects(given, truth, OTHERS)
    assert len(found) == 1
    s = found[0]
    assert (s.first, s.last, s.error_type) == (4, 8, "mislabel")
    assert s.given_label == "p2" and s.suggested_label == "p0" and list(s.proposed) == [0] * 5
    assert np.array_equal(decoded, truth) and wrong[3:8].min() > 0.8 and s.evidence > 0


def test_a_swapped_pair_is_one_disorder_fixed_by_two_labels():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[12:24], given[24:36] = 2, 1  # phases 2 and 3 swapped
    found, decoded, _ = _suspects(given, truth, OTHERS)
    assert [s.error_type for s in found] == ["disorder"]
    s = found[0]
    assert (s.first, s.last) == (13, 36)
    assert list(s.proposed) == [1] * 12 + [2] * 12  # both halves, not one class


def test_a_swap_of_segments_far_apart_names_its_partner():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[0:12], given[36:48] = 3, 0
    found, _, _ = _suspects(given, truth, OTHERS)
    assert sorted(s.error_type for s in found) == ["disorder", "disorder"]
    first, last = sorted(found, key=lambda s: s.first)
    assert first.partner == (37, 48) and last.partner == (1, 12)


def test_a_swap_whose_second_half_the_decoder_only_partly_fixed_is_still_one_disorder():
    """Phases 1 and 2 swapped; the decoder proposes the first half's fix whole
    but only 4 frames of the second (the models sure of the given label on
    the rest): the two blocks are still one swap, typed disorder, each frame
    with its own proposal; a block with no reversed partner stays a mislabel."""
    from fiftyone_csl.plugin.core.edits import suspect_edits

    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[12:24], given[24:36] = 2, 1
    decoded = given.copy()
    decoded[12:24], decoded[24:28] = 1, 2  # frames 28-35 kept as given
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(x) for x in OTHERS], C)
    model = counts.model()
    probs = _probs(truth)
    emission = model.emission(probs)
    frames = np.arange(1, len(given) + 1)
    found = suspect_edits("v", frames, given, decoded, emission, model, _csl(probs, given), CLASSES)
    assert [(s.first, s.last, s.error_type) for s in found] == [(13, 28, "disorder")]
    assert list(found[0].proposed) == [1] * 12 + [2] * 4

    alone = given.copy()
    alone[12:24] = 1  # the first half's fix only: nothing swaps back
    found = suspect_edits("v", frames, given, alone, emission, model, _csl(probs, given), CLASSES)
    assert [s.error_type for s in found] != ["disorder"]


def test_a_moved_boundary_is_a_boundary_shift_with_the_true_boundary():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[24:29] = 1  # phase 2 starts 5 frames late
    found, _, _ = _suspects(given, truth, OTHERS)
    assert len(found) == 1
    s = found[0]
    assert s.error_type == "boundary" and (s.first, s.last) == (25, 29)
    assert s.suggested_boundary == 25  # frame 25 is where phase 2 really starts
    assert list(s.proposed) == [2] * 5


def test_phases_skipped_and_repeated_are_learned_not_flagged():
    # a procedure that is not a chain: phase 1 optional, phase 2 repeated after phase 3
    shapes = [[(0, 14), (2, 10), (3, 12), (2, 9)], [(0, 11), (1, 10), (2, 12), (3, 13)],
              [(0, 12), (2, 30), (3, 8), (2, 20)], [(0, 60), (1, 12), (2, 11), (3, 10), (2, 10)]]  # fmt: skip
    videos = [np.concatenate([np.full(n, c) for c, n in shape]) for shape in shapes * 2]
    for i, video in enumerate(videos):
        found, decoded, _ = _suspects(video, video, videos[:i] + videos[i + 1 :], seed=i)
        assert found == [] and np.array_equal(decoded, video), i


def test_actions_in_no_fixed_order_only_smooth():
    rng = np.random.default_rng(3)
    videos = []
    for _ in range(8):
        order = rng.permutation(np.repeat(np.arange(C), 2))
        videos.append(np.concatenate([np.full(int(rng.integers(8, 20)), c) for c in order]))
    for i, video in enumerate(videos):
        found, _, _ = _suspects(video, video, videos[:i] + videos[i + 1 :], seed=i)
        assert found == [], i
    given = videos[0].copy()
    given[2:7] = (given[2] + 1) % C
    found, _, _ = _suspects(given, videos[0], videos[1:])
    assert len(found) == 1 and found[0].error_type == "mislabel"


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_videos_decode(n):
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(x) for x in OTHERS], C)
    decoded, posterior, _ = fcproc.decode(np.full((n, C), 1 / C), counts.model())
    assert decoded.shape == (n,) and posterior.shape == (n, C)


def _emission(truth, rival=None, lead=0.0):
    """(T, C) log emissions pointing to ``truth``; where ``rival`` is given,
    its label leads the true one by ``lead`` nats a frame (a look-alike)."""
    emission = np.full((len(truth), C), -3.0)
    emission[np.arange(len(truth)), truth] = 0.0
    if rival is not None:
        where = rival >= 0
        emission[where, rival[where]] = lead
    return emission


def test_the_other_half_of_a_swap_gets_the_first_halfs_label_when_the_models_barely_disagree():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[0:12], given[24:36] = 2, 0  # phases 0 and 2 swapped
    decoded = truth.copy()
    decoded[24:36] = 3  # the models see a look-alike of phase 2 in it
    rival = np.full(len(truth), -1)
    rival[24:36] = 3
    near = complete_swaps(given, decoded, _emission(truth, rival, lead=0.5), margin=1.0)
    assert np.array_equal(near, truth)
    far = complete_swaps(given, decoded, _emission(truth, rival, lead=2.0), margin=1.0)
    assert np.array_equal(far, decoded)  # the models are sure: the proposal stands
    never = complete_swaps(given, decoded, _emission(truth, rival, lead=0.5), margin=-np.inf)
    assert np.array_equal(never, decoded)


def test_a_lone_mislabel_is_not_turned_into_a_swap():
    truth = _chain([12, 12, 12, 12])
    given = truth.copy()
    given[24:36] = 0  # phase 2 given as phase 0, no other half
    decoded = truth.copy()
    out = complete_swaps(given, decoded, _emission(truth), margin=1.0)
    assert np.array_equal(out, truth)


@given(
    st.lists(st.integers(0, C - 1), min_size=1, max_size=40),
    st.lists(st.integers(0, C - 1), min_size=40, max_size=40),
    st.floats(-2.0, 3.0),
    st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
def test_completing_swaps_touches_only_frames_the_decoder_changed_and_never_proposes_the_given_label(
    labels, decoded, margin, seed
):
    labels = np.asarray(labels)
    decoded = np.asarray(decoded[: len(labels)])
    emission = np.log(np.random.default_rng(seed).dirichlet(np.ones(C), len(labels)))
    out = complete_swaps(labels, decoded, emission, margin=margin)
    moved = out != decoded
    assert not (moved & (decoded == labels)).any()  # a frame the decoder kept is kept
    assert not (moved & (out == labels)).any()  # a completed half never goes back to its given label
    assert np.array_equal(complete_swaps(labels, decoded, emission, margin=-np.inf), decoded)
