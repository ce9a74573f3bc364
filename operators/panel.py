"""The CSL timeline panel: the current video's CSL over time, with flagged
segments shaded and the given vs suggested labels as tracks, and the review
loop: step through suspect segments (across videos), decide each one
(accept the suggestion, keep, relabel, mark reviewed), undo, refresh the
scores of fixed videos, and follow delegated runs."""

import functools
import os
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types
from bson import ObjectId

from ..plugin.audit.delegated import delegated_runs
from ..plugin.audit.rescore import changed_videos, refresh_scores
from ..plugin.core.errors import CSLError
from ..plugin.review.decisions import review_segment, undo_review
from ..plugin.review.reports import review_counts
from ..plugin.review.segments import kept_suspect_segments, relabelled_videos
from ..plugin.review.timeline import video_timeline
from ..plugin.runs.record import RunNames, get_run_config, list_csl_runs
from .common import RUN_STORE, remembered_run

EMPTY_MESSAGE = (
    "### No CSL for this video yet\n\n"
    "Run **CSL: audit video labels** from the operator browser (or **CSL: replay checkpoints** "
    "with a trained run) to score its frames."
)
ORDER_LABELS = {"csl": "Strongest evidence first", "queue": "Review queue order"}
ACTIVE_STATES = ("queued", "scheduled", "running")
POLL_MS = 3000
"""How often the panel asks, while a delegated run of the plugin is queued or running, whether it ended."""


REVIEW_COLOURS = {
    None: "rgba(220, 50, 50, {a})",  # undecided
    "accepted": "rgba(40, 160, 70, {a})",
    "relabelled": "rgba(40, 160, 70, {a})",
    "kept": "rgba(120, 120, 120, {a})",
    "reviewed": "rgba(60, 110, 220, {a})",
}


def _frame_line(frame):
    """The plot's black line at the player's (or the marked) frame, hidden
    without one; always the layout's first shape (``layout.shapes.0``: the
    bridge's report patches that path)."""
    x = frame if frame is not None else 0
    return {
        "type": "line", "name": "player", "visible": frame is not None, "xref": "x", "yref": "paper",
        "x0": x, "x1": x, "y0": 0, "y1": 1, "line": {"width": 2, "color": "black"},
    }  # fmt: skip


def timeline_figure(timeline, current=None, frame=None):
    """Plotly traces and layout of one video's :class:`Timeline` (plain
    dicts): CSL, the labels the field holds now, the proposal, the review
    queue's frames; each suspect shaded by its decision (red undecided,
    green confirmed, grey kept, blue reviewed; the current one darker), the
    threshold, and the frame the player was sent to. The layout follows the
    panel's width."""
    frames = timeline.frame_numbers
    traces = [
        {"x": frames, "y": [round(v, 3) for v in timeline.csl], "type": "scatter", "mode": "lines", "name": "CSL"},
        {
            "x": frames, "y": timeline.given, "type": "scatter", "mode": "markers", "name": "label now",
            "yaxis": "y2", "marker": {"size": 4},
        },
        {
            "x": frames, "y": timeline.proposed, "type": "scatter", "mode": "markers", "name": "proposed label",
            "yaxis": "y2", "marker": {"size": 4, "symbol": "x"},
        },
    ]  # fmt: skip
    if timeline.queued:
        by_frame = dict(zip(frames, timeline.csl))
        traces.append({
            "x": timeline.queued, "y": [round(by_frame[f], 3) for f in timeline.queued], "type": "scatter",
            "mode": "markers", "name": "review queue", "marker": {"size": 7, "symbol": "diamond-open"},
        })  # fmt: skip
    shapes = [_frame_line(frame)]
    for r in timeline.rows:
        chosen = current == (r["first_frame"], r["last_frame"])
        colour = REVIEW_COLOURS.get(r["review"], REVIEW_COLOURS[None]).format(a=0.4 if chosen else 0.15)
        shapes.append({
            "type": "rect", "xref": "x", "yref": "paper", "x0": r["first_frame"] - 0.5, "x1": r["last_frame"] + 0.5,
            "y0": 0, "y1": 1, "fillcolor": colour, "line": {"width": 2 if chosen else 0, "color": colour},
        })  # fmt: skip
    shapes.append({
        "type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": timeline.threshold,
        "y1": timeline.threshold, "line": {"dash": "dot", "width": 1, "color": "gray"},
    })  # fmt: skip
    layout = {
        "autosize": True,
        "height": 420,
        "margin": {"l": 110, "r": 10, "t": 30, "b": 40},
        "xaxis": {"title": {"text": "frame"}, "anchor": "y2", "range": [frames[0] - 1, frames[-1] + 1]},
        "yaxis": {"title": {"text": "CSL"}, "domain": [0.45, 1.0]},
        "yaxis2": {
            "domain": [0.0, 0.35], "type": "category", "categoryorder": "array", "categoryarray": timeline.classes,
        },
        "shapes": shapes,
        "showlegend": True,
        "dragmode": "select",
        "selectdirection": "h",
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
    }  # fmt: skip
    return traces, layout


def review_line(review) -> str:
    if not review:
        return ""
    parts = [f"{review['reviewed']} decided", f"{review['confirmed_errors']} errors confirmed",
             f"{review['false_alarms']} false alarms", f"{review['remaining']} to go"]  # fmt: skip
    if review.get("estimated_precision_remaining") is not None:
        parts.append(f"est. precision of the rest {review['estimated_precision_remaining']:.0%}")
    return "Review: " + ", ".join(parts)


def runs_table(runs) -> str:
    if not runs:
        return ""
    lines = ["| operation | state | progress | queued |", "|---|---|---|---|"]
    for r in runs[:5]:
        progress = f"{r['progress']:.0%}" if isinstance(r["progress"], (int, float)) else ""
        label = f" {r['label']}" if r["label"] else ""
        lines.append(f"| {r['operator']} | {r['state']} | {progress}{label} | {r['queued_at'] or ''} |")
    return "**Delegated runs**\n\n" + "\n".join(lines)


TABLE_ROWS = 30
"""Suspects the panel's table lists (the first undecided ones in the chosen order)."""


def suspect_rows(rows, limit: int = TABLE_ROWS) -> tuple:
    """``(table, keys)``: the panel's table of suspects, undecided first in
    the chosen order and then the decided ones, at most ``limit`` rows, and
    the segment key of each row (a click on a row goes to it)."""
    ordered = [r for r in rows if not r["review"]] + [r for r in rows if r["review"]]
    table, keys = [], []
    for r in ordered[:limit]:
        proposal = r.get("proposed_labels") or []
        proposed = "/".join(dict.fromkeys(proposal)) if len(set(proposal)) > 1 else (r["suggested_label"] or "")
        table.append({
            "video": r["filepath"].replace("\\", "/").rsplit("/", 1)[-1],
            "frames": f"{r['first_frame']}-{r['last_frame']}",
            "kind": r["error_type"] or "", "given": r["given_label"] or "", "proposed": proposed,
            "evidence": "" if r.get("evidence") is None else f"{r['evidence']:.1f}",
            "csl": f"{r['mean_csl']:.2f}", "decision": r["review"] or "",
        })  # fmt: skip
        keys.append(_key(r))
    return table, keys


def _key(row) -> list:
    return [row["sample_id"], row["first_frame"], row["last_frame"]]


class _DeferredState:
    """Stands in for the context as the writer of the panel's state during
    one event: each ``ctx.panel.state`` assignment updates the local copy
    only, and :meth:`flush` sends the whole state to the App in one
    message. Sent one by one, the twenty-odd assignments of a click were
    as many messages for the App to apply in turn."""

    def __init__(self, ctx):
        self.ctx, self.ops, self.dirty = ctx, self, False

    def patch_panel_state(self, state, panel_id=None):
        self.dirty = True

    def clear_panel_state(self, panel_id=None):
        self.dirty = True

    def apply_panel_state_path(self, path, panel_id=None):
        self.ctx.ops.apply_panel_state_path(path)

    def flush(self):
        if self.dirty:
            self.ctx.ops.set_panel_state(dict(self.ctx.panel.state._data))  # whole: replaced, not merged
            self.dirty = False


def batched(handler):
    """Runs a panel event with its state sent once, at the end (and before
    the App is sent to another sample: :func:`_flush_state`)."""

    @functools.wraps(handler)
    def run(self, ctx):
        state = ctx.panel.state
        previous, writer = state._ctx, _DeferredState(ctx)
        state._ctx = writer
        try:
            return handler(self, ctx)
        finally:
            state._ctx = previous
            writer.flush()

    return run


def _flush_state(ctx):
    writer = getattr(ctx.panel.state, "_ctx", None)
    if isinstance(writer, _DeferredState):
        writer.flush()


class CSLTimelinePanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="csl_timeline",
            label="CSL timeline",
            surfaces="modal",
            help_markdown="CSL of the current video over time, its suspect segments, and the review loop",
        )

    # --- events -----------------------------------------------------------------------

    @batched
    def on_load(self, ctx):
        self._update(ctx)

    @batched
    def on_change_current_sample(self, ctx):
        self._update(ctx)

    @batched
    def on_change_run(self, ctx):
        ctx.store(RUN_STORE).set("run_key", ctx.params.get("value"))  # remembered across reloads and by forms
        ctx.panel.state.segment = None
        ctx.panel.state.chosen = False
        self._update(ctx)

    @batched
    def on_change_order(self, ctx):
        order = ctx.params.get("value") or "csl"
        if order == (ctx.panel.state.order or "csl"):  # the dropdown says its value again as it renders
            return
        ctx.panel.state.order = order
        self._update(ctx)

    @batched
    def on_plot_click(self, ctx):
        x = ctx.params.get("x")
        video = self._video(ctx)
        if isinstance(x, (int, float)) and video:
            ctx.panel.state.frame = int(x)
            self._seek(ctx, video, int(x))
            self._update(ctx)

    def on_player_frame(self, ctx):
        """The JS bridge reports the player's frame (paused, stepped, or every
        half second while playing): the plot's black line follows it, and
        Watch starts there. Two paths patched, not the whole state (not
        batched): merged into the state the App has now, they keep what an
        event running meanwhile (a Next) sends; no read of the run."""
        frame, sample = ctx.params.get("frame"), ctx.params.get("sample")
        if not isinstance(frame, (int, float)) or frame != frame or abs(frame) == float("inf"):
            return  # not a frame number (NaN, infinite, text)
        if not ctx.panel.state.has_scores:
            return
        if sample and sample != ctx.current_sample:  # from the video the modal has just left
            return
        if int(frame) != ctx.panel.state.frame:
            # set here and patched in the App by path (render, after the event, reads the local copy)
            ctx.panel.state.set({"frame": int(frame), "layout.shapes.0": _frame_line(int(frame))})

    @batched
    def on_plot_select(self, ctx):
        xs = [p.get("x") for p in ctx.params.get("data") or [] if isinstance(p.get("x"), (int, float))]
        video = self._video(ctx)
        ctx.panel.state.selection = [video, int(min(xs)), int(max(xs))] if xs and video else None
        self._update(ctx)

    @batched
    def on_table_row(self, ctx):
        keys, row = ctx.panel.state.table_keys or [], ctx.params.get("row")
        if isinstance(row, int) and 0 <= row < len(keys):
            self._go(ctx, keys[row])

    @batched
    def on_next(self, ctx):
        self._step(ctx, +1)

    @batched
    def on_previous(self, ctx):
        self._step(ctx, -1)

    @batched
    def on_accept(self, ctx):
        self._decide(ctx, "accept")

    @batched
    def on_keep(self, ctx):
        self._decide(ctx, "keep")

    @batched
    def on_reviewed(self, ctx):
        self._decide(ctx, "reviewed")

    @batched
    def on_relabel(self, ctx):
        label = ctx.params.get("value")
        if label:  # the dropdown is named after its segment: the next segment's starts empty
            self._decide(ctx, "relabel", label)

    @batched
    def on_relabel_selection(self, ctx):
        label, selection = ctx.params.get("value"), ctx.panel.state.selection
        if label and selection:
            ctx.panel.state.selection = None
            self._decide(ctx, "relabel", label, span=selection, advance=False)

    @batched
    def on_undo(self, ctx):
        key = ctx.panel.state.run_key
        try:
            d = undo_review(ctx.dataset, key)
        except CSLError as e:
            ctx.ops.notify(str(e), variant="info")
            return
        ctx.ops.notify(f"Undone: {d['decision']} frames {d['first']}-{d['last']}", variant="success")
        if d.get("changed_frames"):
            ctx.ops.reload_samples()  # the restored labels, in the player's overlay
        self._go(ctx, [d["sample_id"], d["first"], d["last"]])

    @batched
    def on_refresh(self, ctx):
        results = refresh_scores(ctx.dataset, ctx.panel.state.run_key)
        ctx.ops.notify(f"Scored {len(results.videos)} fixed video(s) again", variant="success")
        ctx.ops.reload_dataset()
        self._update(ctx)

    @batched
    def on_poll(self, ctx):
        """The timer's tick while a delegated run is active: the runs table
        follows its progress, and when a run ends the App is told and
        reloads the dataset (its new fields and runs)."""
        runs = delegated_runs(ctx.dataset)
        watched = set(ctx.panel.state.active_runs or [])
        ended = [r for r in runs if r["id"] in watched and r["state"] not in ACTIVE_STATES]
        table = runs_table(runs)
        if table != ctx.panel.state.runs:
            ctx.panel.state.runs = table
        if not ended:
            active = [r["id"] for r in runs if r["state"] in ACTIVE_STATES]
            if active != (ctx.panel.state.active_runs or []):
                self._replace(ctx, "active_runs", active)
            return
        for r in ended:
            if r["state"] == "completed":
                ctx.ops.notify(f"Delegated run {r['operator']} completed: reloading the dataset", variant="success")
            else:
                error = str(r.get("error") or "").strip().splitlines()[-1:]
                ctx.ops.notify(f"Delegated run {r['operator']} {r['state']}" + "".join(f": {e}" for e in error),
                               variant="error")  # fmt: skip
        ctx.ops.reload_dataset()
        self._update(ctx)

    @batched
    def on_watch(self, ctx):
        """Shows the chosen segment as a clip of its video, from the frame
        marked on the plot (or its first) to its end: opened, the App's
        player starts the clip at that frame and steps through it frame by
        frame (FiftyOne 1.22's player cannot be moved to a frame by a panel,
        and a view cannot change under an open modal: the modal closes on
        the clip, one click away)."""
        video, segment = self._video(ctx), ctx.panel.state.segment
        if not video or not segment or segment[0] != video:
            ctx.ops.notify("Choose a segment of this video first (Next)", variant="warning")
            return
        first, last = int(segment[1]), int(segment[2])
        marked, frames = ctx.panel.state.frame, ctx.panel.state.nframes or last
        start = int(marked) if isinstance(marked, int) and 1 <= marked <= frames else first
        end = last if start <= last else min(start + last - first, frames)
        ctx.store(RUN_STORE).set("watch", [video, start, end])
        ctx.store(RUN_STORE).set("goto", segment)  # chosen again when the clip opens
        ctx.panel.state.frame = start
        _flush_state(ctx)
        ctx.ops.close_sample()
        ctx.ops.set_view(ctx.dataset.select(video).to_clips([[(start, end)]]))
        ctx.ops.notify(f"Frames {start}-{end} as a clip: open it to play them frame by frame (the , and . keys step)")

    @batched
    def on_unwatch(self, ctx):
        """Back from the clip to every video (the modal closes; the segment
        stays chosen for when its video opens)."""
        self._leave_clip(ctx, ctx.panel.state.segment)

    def _leave_clip(self, ctx, segment):
        if segment:
            ctx.store(RUN_STORE).set("goto", list(segment))
        _flush_state(ctx)
        ctx.ops.close_sample()
        ctx.ops.set_view(ctx.dataset.view())
        if segment:
            name = os.path.basename(ctx.dataset[segment[0]].filepath)
            ctx.ops.notify(f"Back to every video: open {name} for frames {segment[1]}-{segment[2]}")

    # --- actions ------------------------------------------------------------------------

    def _rows(self, ctx, fresh=False):
        """The suspects of the run in the chosen order, read once an event
        (``fresh`` after a decision changed them)."""
        key, order = ctx.panel.state.run_key, ctx.panel.state.order or "csl"
        cached = getattr(ctx, "_csl_rows", None)
        if fresh or cached is None or cached[0] != (key, order):
            cached = ((key, order), kept_suspect_segments(ctx.dataset, key, order=order))
            ctx._csl_rows = cached
        return cached[1]

    def _step(self, ctx, direction, rows=None):
        rows = self._rows(ctx, fresh=True) if rows is None else rows
        if not rows:
            return
        keys = [_key(r) for r in rows]
        current = ctx.panel.state.segment if ctx.panel.state.chosen else None  # not yet chosen: from the top
        start = keys.index(current) if current in keys else (-1 if direction > 0 else len(keys))
        order = (
            range(start + 1, start + 1 + len(keys)) if direction > 0 else range(start - 1, start - 1 - len(keys), -1)
        )
        for i in order:  # forward: the next undecided segment in the chosen order; backward: any, to revisit
            row = rows[i % len(rows)]
            if direction < 0 or not row["review"]:
                self._go(ctx, keys[i % len(rows)])
                return
        ctx.ops.notify("Every suspect segment is decided", variant="success")
        self._update(ctx)

    def _go(self, ctx, key):
        ctx.panel.state.segment, ctx.panel.state.chosen = key, True
        ctx.panel.state.frame = int(key[1])
        if key[0] != self._video(ctx):
            # the server's store, not the panel's state: the event of the new sample reads it for sure
            ctx.store(RUN_STORE).set("goto", key)
            target = self._sample_showing(ctx, key)
            if target is None and _watching(ctx):  # a clip opened to watch: back to every video
                self._leave_clip(ctx, key)
                return
            if target is None:
                ctx.ops.notify(f"Frames {key[1]}-{key[2]} of video {key[0]} are not in this view", variant="warning")
                return
            self._announce(ctx, key)
            _flush_state(ctx)  # the state the event of the new sample reads
            ctx.ops.open_sample(id=target)  # the panel updates when the modal's sample changes
        else:
            self._update(ctx)
            self._seek(ctx, key[0], key[1])

    def _announce(self, ctx, key):
        """What the panel can say of the segment before its video opens: its
        description, the counts and the table, and no plot (the old video's
        would be drawn under the new segment's name); the video's plot
        follows when the App has opened it (:meth:`_update`)."""
        rows = self._rows(ctx)
        table = self._show_suspect(ctx, next((r for r in rows if _key(r) == key), None), rows)
        ctx.ops.set_panel_data({"timeline": [], "suspects": table})

    def _show_suspect(self, ctx, row, rows) -> list:
        """The chosen suspect ``row``'s description and the run's counts and
        table (of ``rows``, the run's suspects); returns the table's data."""
        ctx.panel.state.current = self._describe(row)
        ctx.panel.state.can_accept = bool(row and row["suggested_label"] not in (None, row["given_label"]))
        ctx.panel.state.review = review_line(review_counts(ctx.dataset, ctx.panel.state.run_key, _rows=rows))
        table, table_keys = suspect_rows(rows)
        self._replace(ctx, "table_keys", table_keys)
        return table

    def _sample_showing(self, ctx, key):
        """The id of the sample of the current view that shows the segment:
        the video, or on a clips view the clip holding its first frame."""
        view = ctx.view
        if getattr(view, "_is_clips", False):
            from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

            clips = view.match(F("_sample_id") == ObjectId(key[0]))
            for cid, support in zip(*clips.values(["id", "support"])):
                if support[0] <= key[1] <= support[1]:
                    return cid
            return None
        return key[0] if key[0] in set(view.select(key[0]).values("id")) else None

    def _video(self, ctx):
        """The video the modal shows (on a clips or frames view, the video
        its clip or frame comes from), or None."""
        sid = ctx.current_sample
        view = ctx.view
        if sid is None or not (getattr(view, "_is_clips", False) or getattr(view, "_is_frames", False)):
            return sid
        try:
            return str(view[sid].sample_id)
        except Exception:  # not in the view any more
            return None

    def _seek(self, ctx, sample_id, frame_number):
        """Moves the modal's video (its timeline is named after the sample) to the frame."""
        if sample_id != ctx.current_sample:  # a clip or a frame plays on its own timeline
            return
        params = {"frame_number": int(frame_number), "timeline_name": f"timeline-{sample_id}"}
        ctx.trigger("set_frame_number", params)  # an ImaVid timeline's; a plain video ignores it
        # the JS bridge (operators/bridge.js) seeks the modal's video player when the nonce changes
        seek = {"frame": int(frame_number), "sample": sample_id, "nonce": time.time_ns()}
        ctx.panel.state.player = {"seek": seek}

    def _decide(self, ctx, action, label=None, span=None, advance=True):
        key, segment = ctx.panel.state.run_key, span or ctx.panel.state.segment
        if not segment:
            ctx.ops.notify("Choose a segment first (Next)", variant="warning")
            return
        try:
            d = review_segment(ctx.dataset, key, segment[0], segment[1], segment[2], action, label)
        except CSLError as e:
            ctx.ops.notify(str(e), variant="error")
            return
        if d.get("repeated"):  # the same click delivered twice: already done
            return
        changed = f", {len(d['changed_frames'])} label(s) changed" if d["changed_frames"] else ""
        ctx.ops.notify(f"{d['decision']}: frames {d['first']}-{d['last']}{changed}", variant="success")
        if d["changed_frames"]:
            ctx.ops.reload_samples()  # the new labels, in the player's overlay
        if advance:
            self._step(ctx, +1)
        else:
            self._update(ctx)

    # --- state ---------------------------------------------------------------------------

    @staticmethod
    def _replace(ctx, name, value):
        """Sets a state value whole: the App merges patches into what it has
        (a shorter list would keep the tail of the longer one)."""
        ctx.panel.state.set(name, None)
        ctx.panel.state.set(name, value)

    def _update(self, ctx):
        keys = [k for k in list_csl_runs(ctx.dataset) if ctx.dataset.get_run_info(k).config.state == "scored"]
        self._replace(ctx, "run_keys", keys)
        remembered = remembered_run(ctx)
        key = ctx.panel.state.run_key or remembered
        key = key if key in keys else (keys[0] if keys else None)
        ctx.panel.state.run_key = key
        ctx.panel.state.has_scores = False
        try:
            runs = delegated_runs(ctx.dataset)
        except Exception:  # a FiftyOne without delegated operations: nothing to show
            runs = []
        ctx.panel.state.runs = runs_table(runs)
        self._replace(ctx, "active_runs", [r["id"] for r in runs if r["state"] in ACTIVE_STATES])
        ctx.panel.state.watching = _watching(ctx)
        sample_id = self._video(ctx)
        if key is None or sample_id is None:
            ctx.ops.set_panel_data({"timeline": []})
            return
        goto = _pop_goto(ctx, sample_id)
        if goto:
            ctx.panel.state.segment, ctx.panel.state.chosen, ctx.panel.state.frame = goto, True, int(goto[1])
            self._seek(ctx, sample_id, goto[1])
        timeline = video_timeline(ctx.dataset, key, sample_id)
        if timeline is None:
            ctx.ops.set_panel_data({"timeline": []})
            return
        rows = timeline.rows
        ctx.panel.state.nframes = int(timeline.frame_numbers[-1]) if len(timeline.frame_numbers) else None
        segment = ctx.panel.state.segment
        if not segment or segment[0] != sample_id:  # shown, not chosen: Next still starts from the top
            undecided = [r for r in rows if not r["review"]]
            segment = _key(undecided[0]) if undecided else None
            ctx.panel.state.segment, ctx.panel.state.chosen = segment, False
            ctx.panel.state.frame = None
        current = next((r for r in rows if segment and _key(r) == segment), None)
        traces, layout = timeline_figure(
            timeline, (segment[1], segment[2]) if segment else None, ctx.panel.state.frame
        )  # fmt: skip
        ctx.panel.state.has_scores = True
        self._replace(ctx, "layout", layout)
        self._replace(ctx, "classes", timeline.classes)
        ctx.panel.state.summary = (
            f"**{len(rows)}** suspect segment(s) in this video; max CSL **{max(timeline.csl):.2f}**, "
            f"threshold {timeline.threshold:.2f} (run `{key}`)"
        )
        selection = ctx.panel.state.selection
        ctx.panel.state.selection = selection if selection and selection[0] == sample_id else None
        table = self._show_suspect(ctx, current, self._rows(ctx))  # the whole run's: read once for counts and table
        try:  # the videos a decision relabelled and the open one: a click's cost does not grow with the dataset
            names = RunNames.of(get_run_config(ctx.dataset, key))  # the dataset was reloaded just above
            touched = set(relabelled_videos(ctx.dataset, names) if names.decisions else [])
            touched.add(sample_id)
            ctx.panel.state.changed = len(changed_videos(ctx.dataset.select(sorted(touched)), key, cached=True))
        except CSLError:
            ctx.panel.state.changed = 0
        ctx.ops.set_panel_data({"timeline": traces, "suspects": table})  # replaced, never merged

    @staticmethod
    def _describe(row) -> str:
        if row is None:
            return "No suspect segment chosen in this video: press **Next** to go to the next undecided one."
        suggestion = row["suggested_label"] if row["suggested_label"] not in (None, row["given_label"]) else "none"
        proposal = row.get("proposed_labels") or []
        if len(set(proposal)) > 1:  # e.g. both halves of a swap: accept writes each frame's
            runs, last = [], None
            for f, c in enumerate(proposal, start=row["first_frame"]):
                if c != last:
                    runs.append([f, f, c])
                    last = c
                else:
                    runs[-1][1] = f
            suggestion = ", ".join(f"{a}-{b} **{c}**" for a, b, c in runs)
        state = f" - **{row['review']}**" if row["review"] else ""
        return (
            f"**Frames {row['first_frame']}-{row['last_frame']}**: {row['error_type']}, given "
            f"**{row['given_label']}**, proposed {suggestion}, mean CSL {row['mean_csl']:.2f}{state}"
        )

    def render(self, ctx):
        panel = types.Object()
        s = ctx.panel.state
        keys = s.run_keys or []
        if len(keys) > 1:
            panel.enum("run_key", keys, default=s.run_key, label="Run", on_change=self.on_change_run)
        active = bool(s.active_runs)
        if active:  # a queued or running audit comes first, followed until it ends
            panel.md(s.runs, name="runs")
            panel.view("poll", types.TimerView(interval=POLL_MS, on_interval=self.on_poll))
        # the JS bridge: seeks the player, reports its frame, binds the keys (operators/bridge.js)
        panel.define_property("player", types.Object(), view=types.View(
            component="CslPlayerBridge", composite_view=True, on_frame=self.on_player_frame,
            shortcuts={k: self.method_to_uri(m) for k, m in SHORTCUTS.items()}, help=SHORTCUTS_HELP,
        ))  # fmt: skip
        if not s.has_scores:
            panel.md(EMPTY_MESSAGE, name="empty")
        else:
            panel.md(s.summary or "", name="summary")
            panel.md(s.current or "", name="current")
            row = panel.h_stack("navigation", align_x="left", gap=1)
            row.btn("previous", label="Previous", icon="navigate_before", on_click=self.on_previous)
            row.btn("next", label="Next", icon="navigate_next", on_click=self.on_next)
            order = types.Dropdown(label="Order")
            for name, text in ORDER_LABELS.items():
                order.add_choice(name, label=text)
            row.enum("order", order.values(), default=s.order or "csl", on_change=self.on_change_order, view=order)
            if s.segment:
                actions = panel.h_stack("actions", align_x="left", gap=1)
                actions.btn("accept", label="Accept proposal", icon="check", variant="contained",
                            disabled=not s.can_accept, on_click=self.on_accept)  # fmt: skip
                actions.btn("keep", label="Keep given label", icon="block", on_click=self.on_keep)
                actions.btn("reviewed", label="Mark reviewed", icon="visibility", on_click=self.on_reviewed)
                start = s.frame if isinstance(s.frame, int) else s.segment[1]
                actions.btn("watch", label=f"Watch from frame {start}", icon="play_arrow", on_click=self.on_watch)
                name = "relabel_{}_{}_{}".format(*s.segment)  # one per segment: it starts empty on the next
                actions.enum(name, s.classes or [], label="Relabel as", on_change=self.on_relabel,
                             view=types.DropdownView())  # fmt: skip
            if s.selection:
                picked = panel.h_stack("selection", align_x="left", gap=1)
                picked.md(f"Selected frames **{s.selection[1]}-{s.selection[2]}**", name="selected")
                picked.enum("relabel_selection_{}_{}_{}".format(*s.selection), s.classes or [],
                            label="Relabel selection as", on_change=self.on_relabel_selection,
                            view=types.DropdownView())  # fmt: skip
            undo = panel.h_stack("history", align_x="left", gap=1)
            undo.btn("undo", label="Undo last decision", icon="undo", on_click=self.on_undo)
            if s.watching:
                undo.btn("unwatch", label="Back to all videos", icon="arrow_back", on_click=self.on_unwatch)
            if s.changed:
                undo.btn("refresh", label=f"Refresh scores of {s.changed} fixed video(s)", icon="refresh",
                         on_click=self.on_refresh)  # fmt: skip
            if s.review:
                panel.md(s.review, name="review")
            panel.plot(
                "timeline", layout=s.layout, config={"displayModeBar": False, "responsive": True},
                on_click=self.on_plot_click, on_selected=self.on_plot_select,
                componentsProps={"plotly": {"useResizeHandler": True}},
            )  # fmt: skip
            panel.md(LEGEND, name="legend")
            table = types.TableView(on_click_row=self.on_table_row)
            for column, label in TABLE_COLUMNS:
                table.add_column(column, label=label)
            panel.md(
                f"**Suspects** (the first {TABLE_ROWS}, undecided first; click one to go to it)", name="table_title"
            )
            panel.list("suspects", types.Object(), view=table)
        if s.runs and not active:
            panel.md(s.runs, name="runs")
        return types.Property(
            panel, view=types.GridView(orientation="vertical", align_x="stretch", height=100, width=100)
        )


SHORTCUTS = {"a": "on_accept", "k": "on_keep", "v": "on_reviewed", "n": "on_next", "b": "on_previous",
             "u": "on_undo"}  # fmt: skip
"""The bridge's keys (the modal's own: space , . < > 0-9 j r x z p c m l ? + - arrows Esc shift)."""
SHORTCUTS_HELP = "keys: a accept, k keep, v reviewed, n next, b previous, u undo"

TABLE_COLUMNS = (
    ("video", "Video"),
    ("frames", "Frames"),
    ("kind", "Kind"),
    ("given", "Given"),
    ("proposed", "Proposed"),
    ("evidence", "Evidence (nats)"),
    ("csl", "Mean CSL"),
    ("decision", "Decision"),
)

LEGEND = (
    "Shaded: suspects (red undecided, green confirmed, grey kept, blue reviewed). With the modal split (the "
    "player beside the panel), Next, Previous, a row or a click on the plot move the player to that frame, and "
    "the black line follows the player; keys **a** accept, **k** keep, **v** reviewed, **n** next, "
    "**b** previous, **u** undo. **Watch** plays the segment as a clip; drag across the plot to select frames "
    "and relabel them."
)


def _pop_goto(ctx, sample_id):
    """The segment a step to another video asked for, once that video is open."""
    try:
        store = ctx.store(RUN_STORE)
        goto = store.get("goto")
    except Exception:  # no execution store (an old FiftyOne)
        return None
    if goto and goto[0] == sample_id:
        store.delete("goto")
        return goto
    return None


def _watching(ctx) -> bool:
    """Whether the view is the clip the panel opened to watch a segment."""
    view = ctx.view
    if not getattr(view, "_is_clips", False):
        return False
    try:
        watch = ctx.store(RUN_STORE).get("watch")
    except Exception:  # no execution store (an old FiftyOne)
        return False
    if not watch or view.count() != 1:
        return False
    clips = list(zip(*view.values(["sample_id", "support"])))
    return len(clips) == 1 and [str(clips[0][0]), *clips[0][1]] == list(watch)
