"""Suspects as edits: the differences between a video's given labels and the
label sequence the decoder proposes (:mod:`~fiftyone_csl.plugin.core.procedure`),
each typed, fixed frame by frame and weighed.

Each block of frames with one (given, decoded) pair of labels is an edit,
typed in the context of the other edits' fixes:

- ``disorder``: it swaps labels with another block of the video (given ``a``
  decoded ``b`` here, given ``b`` decoded ``a`` there), one of the two
  covering most of its run of given label; two such halves at most
  ``max_gap`` frames apart are one suspect, others name each other in
  ``partner``;
- ``boundary``: the label across one of its ends is the proposed one and
  its given label goes on past the other end: the change of label moves;
  ``suggested_boundary`` is the first frame of the later phase as decoded;
- ``mislabel``: otherwise.

Before typing, :func:`complete_swaps` gives the other half of a swap the
label the first half was given, where the decoder proposed a third label
the models barely prefer.

Its evidence is the log-likelihood ratio of the proposed labels against the
given ones over the suspect (emissions and the transitions into, inside and
out of it), in nats; the proposal of every frame is kept, so a swapped pair
is fixed by two labels.
"""

import numpy as np

from . import procedure as fcproc
from .flags import SuspectSegment

MIN_EVIDENCE = 8.0
"""Least log-likelihood ratio (nats) of a suspect's proposed labels over its
given ones (benchmarks/decoder.py measures 2, 4, 8 and 16)."""


RUN_SHARE = 0.5
"""Share of its run of given label a block must cover to be half of a swap."""

GATE = 0.5
"""A frame is changed only when its CSL exceeds ``GATE`` x the threshold:
where the models were sure of the given label, the procedure alone does not
overrule them (on the hard benchmark this halved the right frames an accept
breaks, for 1-4 points of recall)."""

SWAP_MARGIN = 1.0
"""Nats per frame the models' emissions may prefer another label over the
given label of a swap's other half before the swap is not completed (see
:func:`complete_swaps`; benchmarks/decoder.py measures it)."""


def _blocks(given: np.ndarray, decoded: np.ndarray) -> list:
    """``[(a, b, given, decoded)]``: runs of one (given, decoded) pair among
    the frames where the two differ."""
    out = []
    t, stop = 0, len(given)
    while t < stop:
        if given[t] == decoded[t]:
            t += 1
            continue
        u = t
        while u < stop and given[u] == given[t] and decoded[u] == decoded[t]:
            u += 1
        out.append((t, u, int(given[t]), int(decoded[t])))
        t = u
    return out


def _covers_run(given: np.ndarray, a: int, b: int, share: float) -> bool:
    """True if the block ``[a, b)`` covers at least ``share`` of the run of
    given label it lies in."""
    ra = a
    while ra > 0 and given[ra - 1] == given[a]:
        ra -= 1
    rb = b
    while rb < len(given) and given[rb] == given[a]:
        rb += 1
    return (b - a) >= share * (rb - ra)


def _whole_blocks(labels: np.ndarray, decoded: np.ndarray) -> tuple:
    """``(blocks, whole)``: the :func:`_blocks` of the two label sequences and,
    for each, whether it covers enough of its run of given label to be half
    of a swap (:data:`RUN_SHARE`)."""
    blocks = _blocks(labels, decoded)
    return blocks, [_covers_run(labels, a, b, RUN_SHARE) for a, b, _, _ in blocks]


def complete_swaps(labels, decoded, emission, margin: float = SWAP_MARGIN) -> np.ndarray:
    """The decoded labels with the other half of each swap filled in.

    Two blocks swapped in the given labels are fixed by swapping them back:
    a block given ``a`` that should be ``b`` has a partner given ``b`` that
    should be ``a``. Where the decoder proposes ``b`` for a whole run given
    ``a`` but, for a whole run given ``b``, proposes a third label ``c``, the
    partner's proposal becomes ``a`` when the models' emissions over it rate
    ``a`` at most ``margin`` nats per frame below ``c`` (look-alike phases
    leave the models unsure which of the two it is; the swap is not)."""
    out = np.asarray(decoded, dtype=np.int64).copy()
    blocks, whole = _whole_blocks(labels, out)
    pairs = {(g, d) for (_, _, g, d), w in zip(blocks, whole) if w}
    for j, (a, b, g, d) in enumerate(blocks):
        if not whole[j] or (d, g) in pairs:
            continue
        for other, (_, _, gi, di) in zip(whole, blocks):
            if other and di == g and gi not in (d, g):
                if emission[a:b, gi].sum() >= emission[a:b, d].sum() - margin * (b - a):
                    out[a:b] = gi
                    break
    return out


def _is_boundary(given: np.ndarray, fixed: np.ndarray, a: int, b: int, g: int, d: int) -> int | None:
    """The index of the moved change when the block ``[a, b)`` (given ``g``,
    proposed ``d``) moves a change of label, else None: the label across one
    end is ``d`` (as the other fixes leave it) and the given ``g`` goes on
    past the other end."""
    n = len(given)
    before = fixed[a - 1] if a > 0 else -1
    after = fixed[b] if b < n else -1
    if before == d and after == g and given[b] == g:  # d d | g g g -> d d d d | g: the later phase starts at b
        return b
    if after == d and before == g and given[a - 1] == g:  # g g g | d d -> g | d d d d: it starts at a
        return a
    return None


def _evidence(model, emission, labels, proposal, start, stop) -> float:
    """Log-likelihood ratio of ``proposal`` on ``[start, stop)`` against the
    given labels (emissions and the transitions into, inside and out of it)."""
    hybrid = labels.copy()
    hybrid[start:stop] = proposal[start:stop]
    lo, hi = max(0, start - 1), min(len(labels), stop + 1)
    return model.path_score(emission, hybrid, lo, hi) - model.path_score(emission, labels, lo, hi)


def suspect_edits(sample_id, frame_numbers, labels, decoded, emission, model, csl, classes,
                  max_gap: int = 2, min_evidence: float | None = None) -> list:  # fmt: skip
    """The suspects of one video as :class:`SuspectSegment` objects (with
    ``proposed``, ``partner`` and ``evidence`` set).

    Each block of frames with one (given, decoded) pair is an edit, typed in
    the context of the others (a change of label that another fix moves is
    a boundary shift); two adjacent blocks that swap labels are one disorder
    suspect, fixed by two labels."""
    min_evidence = MIN_EVIDENCE if min_evidence is None else float(min_evidence)
    labels = np.asarray(labels, dtype=np.int64)
    decoded = np.asarray(decoded, dtype=np.int64)
    csl = np.asarray(csl, dtype=np.float64)
    blocks, whole = _whole_blocks(labels, decoded)
    # halves of a swap: blocks with reversed (given, proposed) pairs, one of them covering most of its run (a
    # swap whose other half the gate or a neighbouring error cut short is still one; benchmarks/decoder.py)
    swaps = {
        i: [j for j, (_, _, g2, d2) in enumerate(blocks) if j != i and (whole[i] or whole[j]) and (g2, d2) == (d, g)]
        for i, (_, _, g, d) in enumerate(blocks)
    }
    swaps = {i: js for i, js in swaps.items() if js}
    # adjacent halves of a swap are one suspect
    groups = []
    for i, (a, *_) in enumerate(blocks):
        if groups and i - 1 in swaps.get(i, []) and a - blocks[i - 1][1] <= max_gap and len(groups[-1]) == 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for group in groups:
        start, stop = blocks[group[0]][0], blocks[group[-1]][1]
        evidence = _evidence(model, emission, labels, decoded, start, stop)
        if evidence < min_evidence:
            continue
        error_type, boundary, partner = "mislabel", None, None
        a, b, g, d = blocks[group[0]]
        if len(group) == 2:
            error_type = "disorder"
        elif swaps.get(group[0]):
            error_type = "disorder"
            j = min(swaps[group[0]], key=lambda j: abs(blocks[j][0] - a))
            partner = (int(frame_numbers[blocks[j][0]]), int(frame_numbers[blocks[j][1] - 1]))
        else:
            index = _is_boundary(labels, decoded, a, b, g, d)
            if index is not None:
                error_type = "boundary"
                boundary = int(frame_numbers[min(index, len(frame_numbers) - 1)])
        changed = labels[start:stop] != decoded[start:stop]
        given = int(np.bincount(labels[start:stop][changed], minlength=len(classes)).argmax())
        suggested = int(np.bincount(decoded[start:stop][changed], minlength=len(classes)).argmax())
        out.append(
            SuspectSegment.over(
                sample_id, frame_numbers, start, stop, csl, classes, given, suggested, error_type, boundary,
                proposed=decoded[start:stop].copy(), partner=partner, evidence=float(evidence),
            )
        )  # fmt: skip
    return out


def decode_suspects(sample_id, frame_numbers, labels, csl, mean_probs, counts, classes, threshold,
                    min_evidence: float | None = None, gate: float | None = None,
                    swap_margin: float | None = None) -> tuple:  # fmt: skip
    """Decodes one video with the procedure of the other videos (``counts``
    of every video, this one included, less this one's) and returns
    ``(suspects, decoded, wrong_prob, confidence)``: the video's suspects,
    its proposed class per scored frame, per frame the posterior probability
    that its given label is wrong, and that of the proposed class."""
    labels = np.asarray(labels, dtype=np.int64)
    model = counts.without(fcproc.label_runs(labels)).model()
    decoded, posterior, emission = fcproc.decode(mean_probs, model)
    decoded = complete_swaps(labels, decoded, emission, SWAP_MARGIN if swap_margin is None else swap_margin)
    gate = GATE if gate is None else gate
    if gate > 0:  # a frame the models were sure of keeps its given label
        decoded = np.where(np.asarray(csl) > gate * threshold, decoded, labels)
    frames = np.arange(len(labels))
    wrong = 1.0 - posterior[frames, labels]
    confidence = posterior[frames, decoded].astype(np.float32)
    suspects = suspect_edits(
        sample_id, frame_numbers, labels, decoded, emission, model, csl, classes, min_evidence=min_evidence
    )
    return suspects, decoded, np.clip(wrong, 0.0, 1.0).astype(np.float32), confidence
