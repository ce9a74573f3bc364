"""The CSL timeline panel's logic, driven through its event handlers with a
stand-in for the App's execution context (the real App: test_app_browser.py):
the plot reads the labels as they are now and draws each decision, the data
of a video replaces the last one's, Next follows the global order from the
worst suspect, one click is one decision, clips views find their video, a
segment is watched as a clip from the frame marked on the plot, and a
delegated run is followed until it ends."""

import fiftyone_csl as fcsl
import pytest
from fiftyone.operators.panel import PanelRef
from fiftyone_csl.operators.panel import CSLTimelinePanel, timeline_figure
from fiftyone_csl.plugin.review.timeline import video_timeline


class _Ops:
    def __init__(self, ctx):
        self.ctx, self.calls = ctx, []

    def __getattr__(self, name):
        def op(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "open_sample":  # the App opens the sample, then tells the panel
                self.ctx.current_sample = kwargs["id"]
                self.ctx.panel_obj.on_change_current_sample(self.ctx)
            if name == "set_panel_data":
                self.ctx.data = args[0]
            if name == "close_sample":
                self.ctx.current_sample = None
            if name == "set_view":
                self.ctx.view = args[0] if args else kwargs["view"]

        return op


class _Store(dict):
    def set(self, k, v):
        self[k] = v

    def delete(self, k):
        self.pop(k, None)


class Ctx:
    """What the panel reads of the App: dataset, view, current sample, the
    panel's state, its data, the store, operations."""

    def __init__(self, dataset, view=None, sample=None):
        self.dataset, self.view, self.current_sample = dataset, view if view is not None else dataset, sample
        self.panel_state = {}
        self.ops, self.params, self.data, self.triggers = _Ops(self), {}, None, []
        self.panel = PanelRef(self)  # FiftyOne's own: its state writes go through ctx.ops
        self.stores = {}
        self.panel_obj = CSLTimelinePanel()

    def store(self, name):
        return self.stores.setdefault(name, _Store())

    def trigger(self, name, params=None):
        self.triggers.append((name, params))

    def event(self, handler, **params):
        self.params = params
        getattr(self.panel_obj, handler)(self)


@pytest.fixture()
def reviewable(audited):
    dataset = audited[0].clone()
    fcsl.copy_csl_run(dataset, "csl")
    yield dataset
    fcsl.delete_csl_run(dataset, "csl")
    dataset.delete()


def test_the_timeline_reads_the_labels_as_they_are_now_and_draws_each_decision(reviewable):
    row = next(r for r in fcsl.suspect_segments(reviewable, "csl") if r["suggested_label"] != r["given_label"])
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    before = video_timeline(reviewable, "csl", sid)
    label = next(c for c in before.classes if c != row["given_label"])
    fcsl.review_segment(reviewable, "csl", sid, first, last, "relabel", label)
    after = video_timeline(reviewable, "csl", sid)
    inside = [g for f, g in zip(after.frame_numbers, after.given) if first <= f <= last]
    assert inside and set(inside) == {label} != set(g for f, g in zip(before.frame_numbers, before.given)
                                                    if first <= f <= last)  # fmt: skip
    traces, layout = timeline_figure(after, (first, last), frame=first)
    assert traces[1]["y"] == after.given and traces[0]["x"] == after.frame_numbers
    decided = next(r for r in after.rows if (r["first_frame"], r["last_frame"]) == (first, last))
    assert decided["review"] == "relabelled"
    rects = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert len(rects) == len(after.rows) and any(s["fillcolor"].startswith("rgba(40, 160, 70") for s in rects)
    assert any(s["type"] == "line" and s["x0"] == first for s in layout["shapes"])  # the player's frame


def test_the_player_bridge_gets_a_seek_per_step_and_its_frame_reports_move_the_line(reviewable):
    """Each step asks the JS bridge for a seek (a new nonce, the segment's
    first frame, its video); a report of the player's frame moves the plot's
    line and Watch's start; a report that is no frame number, or from a
    video the modal has left, changes nothing."""
    rows = fcsl.suspect_segments(reviewable, "csl")
    ctx = Ctx(reviewable, sample=rows[0]["sample_id"])
    ctx.event("on_load")
    ctx.event("on_next")
    seek = ctx.panel.state.player["seek"]
    assert (seek["frame"], seek["sample"]) == (rows[0]["first_frame"], rows[0]["sample_id"])
    ctx.event("on_plot_click", x=rows[0]["first_frame"] + 1)
    again = ctx.panel.state.player["seek"]
    assert again["frame"] == rows[0]["first_frame"] + 1 and again["nonce"] != seek["nonce"]

    frame = rows[0]["first_frame"] + 3
    ctx.event("on_player_frame", frame=frame, sample=rows[0]["sample_id"])
    assert ctx.panel.state.frame == frame
    line = ctx.panel.state.get("layout.shapes.0")
    assert (line["x0"], line["visible"]) == (frame, True)
    for bad in (float("nan"), float("inf"), "12", None):
        ctx.event("on_player_frame", frame=bad, sample=rows[0]["sample_id"])
        assert ctx.panel.state.frame == frame
    ctx.event("on_player_frame", frame=frame + 5, sample="another video")
    assert ctx.panel.state.frame == frame


def test_next_starts_at_the_worst_and_follows_the_global_order_across_decisions(reviewable):
    rows = fcsl.suspect_segments(reviewable, "csl")
    assert len({r["sample_id"] for r in rows}) >= 2
    last_video = rows[-1]["sample_id"]
    ctx = Ctx(reviewable, sample=last_video)  # the modal opened on some video
    ctx.event("on_load")
    assert ctx.panel.state.segment is not None and not ctx.panel.state.chosen
    ctx.event("on_next")
    assert ctx.panel.state.segment == [rows[0]["sample_id"], rows[0]["first_frame"], rows[0]["last_frame"]]
    assert ctx.current_sample == rows[0]["sample_id"]
    seen = [ctx.panel.state.segment]
    for _ in range(min(4, len(rows) - 1)):
        ctx.event("on_keep")
        seen.append(ctx.panel.state.segment)
    expected = [[r["sample_id"], r["first_frame"], r["last_frame"]] for r in rows[: len(seen)]]
    assert seen == expected
    # the player was sent to each segment's first frame, on the video's own timeline
    moves = [p for name, p in ctx.triggers if name == "set_frame_number"]
    assert moves[-1] == {"frame_number": seen[-1][1], "timeline_name": f"timeline-{seen[-1][0]}"}


def test_a_video_change_replaces_the_plot_data_and_one_click_is_one_decision(reviewable):
    lengths = dict(zip(*reviewable.values(["id", "frames.frame_number"])))
    long_id, short_id = max(lengths, key=lambda k: len(lengths[k])), min(lengths, key=lambda k: len(lengths[k]))
    assert len(lengths[long_id]) != len(lengths[short_id])
    ctx = Ctx(reviewable, sample=long_id)
    ctx.event("on_load")
    assert len(ctx.data["timeline"][0]["x"]) == len(lengths[long_id])
    ctx.current_sample = short_id
    ctx.ops.calls.clear()
    ctx.event("on_change_current_sample")
    names = [name for name, _, _ in ctx.ops.calls]
    assert "set_panel_data" in names and "patch_panel_data" not in names  # whole, not patched into the longer's
    # and the state goes in one message, whole, not as one patch per value
    assert names.count("set_panel_state") == 1 and "patch_panel_state" not in names
    sent = next(args[0] for name, args, _ in ctx.ops.calls if name == "set_panel_state")
    assert sent["has_scores"] and sent["segment"] == ctx.panel.state.segment
    assert len(ctx.data["timeline"][0]["x"]) == len(lengths[short_id])

    ctx.event("on_next")
    segment = list(ctx.panel.state.segment)
    label = ctx.panel.state.classes[0]
    ctx.event("on_relabel", value=label)
    ctx.panel.state.segment, ctx.panel.state.chosen = segment, True  # the same event delivered twice
    ctx.event("on_relabel", value=label)
    decisions = fcsl.list_decisions(reviewable, "csl")
    assert len(decisions) == 1 and decisions[0]["new_label"] == label
    ctx.event("on_undo")
    assert fcsl.list_decisions(reviewable, "csl") == []

    ctx.ops.calls.clear()
    ctx.event("on_change_order", value="csl")  # the order it has: nothing to read again
    assert ctx.ops.calls == []
    ctx.event("on_change_order", value="queue")
    assert ctx.panel.state.order == "queue" and "set_panel_data" in [c[0] for c in ctx.ops.calls]


def test_a_selection_on_the_plot_is_relabelled_frame_for_frame(reviewable):
    row = fcsl.suspect_segments(reviewable, "csl")[0]
    sid = row["sample_id"]
    ctx = Ctx(reviewable, sample=sid)
    ctx.event("on_load")
    frames = [row["first_frame"], row["first_frame"] + 1, row["first_frame"] + 2]
    ctx.event("on_plot_select", data=[{"x": f, "y": 0.5} for f in frames])
    assert ctx.panel.state.selection == [sid, frames[0], frames[-1]]
    label = ctx.panel.state.classes[-1]
    ctx.event("on_relabel_selection", value=label)
    [d] = fcsl.list_decisions(reviewable, "csl")
    assert (d["first"], d["last"], d["decision"], d["new_label"]) == (frames[0], frames[-1], "relabelled", label)
    now = video_timeline(reviewable, "csl", sid)
    assert {g for f, g in zip(now.frame_numbers, now.given) if f in frames} == {label}
    fcsl.undo_review(reviewable, "csl")


def test_on_a_clips_view_the_panel_shows_the_clips_video_and_opens_clips(reviewable):
    clips = reviewable.load_saved_view("csl-suspect-clips")
    clip = clips.first()
    ctx = Ctx(reviewable, view=clips, sample=clip.id)
    ctx.event("on_load")
    assert ctx.panel.state.has_scores, "the panel must find the clip's video"
    assert len(ctx.data["timeline"][0]["x"]) == len(reviewable[str(clip.sample_id)].frames)
    ctx.event("on_next")
    opened = [kw["id"] for name, _, kw in ctx.ops.calls if name == "open_sample"]
    assert opened and all(i in set(clips.values("id")) for i in opened)
    segment = ctx.panel.state.segment
    clip = ctx.view[opened[-1]]  # the clip holding the chosen segment's first frame
    assert str(clip.sample_id) == segment[0] and clip.support[0] <= segment[1] <= clip.support[1]


def test_the_suspect_table_lists_undecided_first_and_a_row_click_goes_to_it(reviewable):
    everything = fcsl.suspect_segments(reviewable, "csl")
    assert len(everything) >= 3
    first = everything[0]
    ctx = Ctx(reviewable, sample=first["sample_id"])
    ctx.event("on_load")
    table, keys = ctx.data["suspects"], ctx.panel.state.table_keys
    assert len(table) == len(keys) == min(len(everything), 30)
    assert table[0]["frames"] == f"{first['first_frame']}-{first['last_frame']}" and table[0]["decision"] == ""
    assert table[0]["evidence"] == f"{first['evidence']:.1f}"  # the decoder's: the order it sorts by
    assert keys[0] == [first["sample_id"], first["first_frame"], first["last_frame"]]

    ctx.event("on_next")
    ctx.event("on_keep")  # decided: it moves below the undecided ones
    table, keys = ctx.data["suspects"], ctx.panel.state.table_keys
    decided = [i for i, r in enumerate(table) if r["decision"]]
    assert [r["decision"] for r in table].count("kept") == 1
    assert decided == list(range(len(table) - len(decided), len(table)))

    target = keys[2]  # a click on the third row: its segment, in its video
    ctx.event("on_table_row", row=2)
    assert ctx.panel.state.segment == target and ctx.current_sample == target[0]
    ctx.event("on_table_row", row=len(keys) + 5)  # out of range: nothing moves
    assert ctx.panel.state.segment == target


def test_watch_shows_the_segment_as_a_clip_from_the_marked_frame_and_next_leaves_it(reviewable):
    rows = fcsl.suspect_segments(reviewable, "csl")
    row = rows[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    ctx = Ctx(reviewable, sample=sid)
    ctx.event("on_load")
    ctx.event("on_next")
    assert ctx.panel.state.segment == [sid, first, last]
    marked = min(first + 2, last)
    ctx.event("on_plot_click", x=marked)
    ctx.event("on_watch")
    # the modal closed first (a view cannot change under it); the view is one clip of that video,
    # from the marked frame to the segment's end
    names = [c[0] for c in ctx.ops.calls]
    assert names.index("close_sample") < names.index("set_view")
    assert ctx.view._is_clips and len(ctx.view) == 1
    clip = ctx.view.first()
    assert (str(clip.sample_id), list(clip.support)) == (sid, [marked, last])
    ctx.current_sample = clip.id  # the reviewer opens it
    ctx.event("on_load")
    assert ctx.panel.state.segment == [sid, first, last] and ctx.panel.state.watching
    assert ctx.panel.state.has_scores  # the clip's video, whole
    assert len(ctx.data["timeline"][0]["x"]) == len(reviewable[sid].frames)
    assert fcsl.list_decisions(reviewable, "csl") == []  # watching decides nothing

    other = next(r for r in rows if r["sample_id"] != sid)
    key = [other["sample_id"], other["first_frame"], other["last_frame"]]
    ctx.event("on_table_row", row=ctx.panel.state.table_keys.index(key))
    # not in the clip: back to every video, and the segment is chosen when its video opens
    assert not getattr(ctx.view, "_is_clips", False) and len(ctx.view) == len(reviewable)
    ctx.current_sample = other["sample_id"]
    ctx.event("on_load")
    assert ctx.panel.state.segment == key and ctx.panel.state.chosen and not ctx.panel.state.watching

    ctx.event("on_watch")
    ctx.current_sample = ctx.view.first().id
    ctx.event("on_load")
    assert ctx.panel.state.watching
    ctx.event("on_unwatch")
    assert len(ctx.view) == len(reviewable) and ctx.current_sample is None


def test_a_delegated_run_is_followed_until_it_ends_then_the_dataset_reloads(reviewable):
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionResult
    from fiftyone_csl.plugin.audit.delegated import queue_delegated
    from fiftyone_csl.plugin.runs.record import operator_uri

    service = DelegatedOperationService()
    op = queue_delegated(operator_uri("audit_video_labels"), "audit", reviewable.name, [], {"label_field": "phase"})
    try:
        ctx = Ctx(reviewable, sample=reviewable.first().id)
        ctx.event("on_load")
        assert ctx.panel.state.active_runs == [str(op.id)]
        ctx.ops.calls.clear()
        ctx.event("on_poll")  # still queued: nothing said, nothing reloaded
        assert not [c for c in ctx.ops.calls if c[0] in ("notify", "reload_dataset")]
        service.set_running(op.id)
        ctx.event("on_poll")
        assert "running" in ctx.panel.state.runs and not [c for c in ctx.ops.calls if c[0] == "notify"]
        service.set_completed(op.id)
        ctx.event("on_poll")
        names = [c[0] for c in ctx.ops.calls]
        notes = [c[1][0] for c in ctx.ops.calls if c[0] == "notify"]
        assert "reload_dataset" in names and any("completed" in n for n in notes)
        assert ctx.panel.state.active_runs == []  # the timer stops: the panel renders none
        ctx.ops.calls.clear()
        ctx.event("on_poll")  # told once
        assert not [c for c in ctx.ops.calls if c[0] == "notify"]

        failing = queue_delegated(operator_uri("audit_video_labels"), "audit", reviewable.name, [], {})
        ctx.event("on_load")
        service.set_failed(failing.id, result=ExecutionResult(error="Traceback ...\nCSLError: the disk is full"))
        ctx.ops.calls.clear()
        ctx.event("on_poll")  # a failed run says its error's last line
        [(name, args, kwargs)] = [c for c in ctx.ops.calls if c[0] == "notify"]
        assert args[0].endswith("failed: CSLError: the disk is full") and kwargs["variant"] == "error"
        service.delete_operation(ObjectId(str(failing.id)))
    finally:
        service.delete_operation(ObjectId(str(op.id)))
