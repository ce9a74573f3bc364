"""The CSL timeline panel: the current video's CSL over time, with flagged
segments shaded and the given vs suggested labels as tracks, and the review
loop: step through suspect segments (across videos), decide each one
(accept the suggestion, keep, relabel, mark reviewed), undo, refresh the
scores of fixed videos, and follow delegated runs."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.delegated import delegated_runs
from ..plugin.audit.rescore import changed_videos, refresh_scores
from ..plugin.core.errors import CSLError
from ..plugin.review.decisions import review_segment, undo_review
from ..plugin.review.reports import review_counts
from ..plugin.review.segments import suspect_segments
from ..plugin.runs.access import load_csl_results
from ..plugin.runs.record import list_csl_runs
from .common import RUN_STORE, remembered_run

EMPTY_MESSAGE = (
    "### No CSL for this video yet\n\n"
    "Run **CSL: audit video labels** from the operator browser (or **CSL: replay checkpoints** "
    "with a trained run) to score its frames."
)
ORDER_LABELS = {"csl": "Worst CSL first", "queue": "Review queue order"}


def timeline_figure(frame_numbers, csl, given, suggested, segments, threshold, classes, current=None):
    """Plotly traces and layout of one video's timeline (plain dicts); the
    layout follows the panel's width."""
    frames = [int(f) for f in frame_numbers]
    traces = [
        {"x": frames, "y": [round(float(v), 3) for v in csl], "type": "scatter", "mode": "lines", "name": "CSL"},
        {
            "x": frames, "y": given, "type": "scatter", "mode": "markers", "name": "given label",
            "yaxis": "y2", "marker": {"size": 4},
        },
        {
            "x": frames, "y": suggested, "type": "scatter", "mode": "markers", "name": "suggested label",
            "yaxis": "y2", "marker": {"size": 4, "symbol": "x"},
        },
    ]  # fmt: skip
    shapes = [
        {
            "type": "rect", "xref": "x", "yref": "paper", "x0": s.first - 0.5, "x1": s.last + 0.5, "y0": 0, "y1": 1,
            "fillcolor": "rgba(220, 50, 50, 0.35)" if current == (s.first, s.last) else "rgba(220, 50, 50, 0.15)",
            "line": {"width": 0},
        }
        for s in segments
    ] + [
        {
            "type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold,
            "line": {"dash": "dot", "width": 1, "color": "gray"},
        }
    ]  # fmt: skip
    layout = {
        "autosize": True,
        "height": 420,
        "margin": {"l": 110, "r": 10, "t": 30, "b": 40},
        "xaxis": {"title": {"text": "frame"}, "anchor": "y2"},
        "yaxis": {"title": {"text": "CSL"}, "domain": [0.45, 1.0]},
        "yaxis2": {"domain": [0.0, 0.35], "type": "category", "categoryorder": "array", "categoryarray": classes},
        "shapes": shapes,
        "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
    }
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

    def on_load(self, ctx):
        self._update(ctx)

    def on_change_current_sample(self, ctx):
        self._update(ctx)

    def on_change_run(self, ctx):
        ctx.store(RUN_STORE).set("run_key", ctx.params.get("value"))  # remembered across reloads and by forms
        ctx.panel.state.segment = None
        self._update(ctx)

    def on_change_order(self, ctx):
        ctx.panel.state.order = ctx.params.get("value") or "csl"
        self._update(ctx)

    def on_plot_click(self, ctx):
        x = ctx.params.get("x")
        if isinstance(x, (int, float)) and ctx.current_sample:
            self._seek(ctx, ctx.current_sample, int(x))

    def on_next(self, ctx):
        self._step(ctx, +1)

    def on_previous(self, ctx):
        self._step(ctx, -1)

    def on_accept(self, ctx):
        self._decide(ctx, "accept")

    def on_keep(self, ctx):
        self._decide(ctx, "keep")

    def on_reviewed(self, ctx):
        self._decide(ctx, "reviewed")

    def on_relabel(self, ctx):
        label = ctx.params.get("value")
        ctx.panel.state.relabel = None  # the list is empty again for the next segment
        if label:
            self._decide(ctx, "relabel", label)

    def on_undo(self, ctx):
        key = ctx.panel.state.run_key
        try:
            d = undo_review(ctx.dataset, key)
        except CSLError as e:
            ctx.ops.notify(str(e), variant="error")
            return
        ctx.ops.notify(f"Undone: {d['decision']} frames {d['first']}-{d['last']}", variant="success")
        self._go(ctx, [d["sample_id"], d["first"], d["last"]])
        ctx.ops.reload_samples()

    def on_refresh(self, ctx):
        results = refresh_scores(ctx.dataset, ctx.panel.state.run_key)
        ctx.ops.notify(f"Scored {len(results.videos)} fixed video(s) again", variant="success")
        ctx.ops.reload_dataset()
        self._update(ctx)

    # --- actions ------------------------------------------------------------------------

    def _rows(self, ctx):
        return suspect_segments(ctx.dataset, ctx.panel.state.run_key, order=ctx.panel.state.order or "csl")

    def _step(self, ctx, direction):
        rows = self._rows(ctx)
        if not rows:
            return
        keys = [[r["sample_id"], r["first_frame"], r["last_frame"]] for r in rows]
        current = ctx.panel.state.segment
        start = keys.index(current) if current in keys else -1
        order = (
            range(start + 1, start + 1 + len(keys)) if direction > 0 else range(start - 1, start - 1 - len(keys), -1)
        )
        for i in order:  # forward: the next undecided segment; backward: any, to revisit a decision
            row = rows[i % len(rows)]
            if direction < 0 or not row["review"]:
                self._go(ctx, keys[i % len(rows)])
                return
        ctx.ops.notify("Every suspect segment is decided", variant="success")
        self._update(ctx)

    def _go(self, ctx, key):
        ctx.panel.state.segment = key
        if key[0] != ctx.current_sample:
            ctx.panel.state.pending_seek = key[:2]  # once the video is open
            ctx.ops.open_sample(id=key[0])  # the panel updates when the modal's sample changes
        else:
            self._update(ctx)
            self._seek(ctx, key[0], key[1])

    def _seek(self, ctx, sample_id, frame_number):
        """Moves the modal's video (its timeline is named after the sample) to the frame."""
        params = {"frame_number": int(frame_number), "timeline_name": f"timeline-{sample_id}"}
        ctx.trigger("set_frame_number", params)

    def _decide(self, ctx, action, label=None):
        key, segment = ctx.panel.state.run_key, ctx.panel.state.segment
        if not segment:
            ctx.ops.notify("Choose a segment first (Next)", variant="warning")
            return
        try:
            d = review_segment(ctx.dataset, key, segment[0], segment[1], segment[2], action, label)
        except CSLError as e:
            ctx.ops.notify(str(e), variant="error")
            return
        changed = f", {len(d['changed_frames'])} label(s) changed" if d["changed_frames"] else ""
        ctx.ops.notify(f"{d['decision']}: frames {d['first']}-{d['last']}{changed}", variant="success")
        ctx.ops.reload_samples()
        self._step(ctx, +1)

    # --- state ---------------------------------------------------------------------------

    def _update(self, ctx):
        keys = [k for k in list_csl_runs(ctx.dataset) if ctx.dataset.get_run_info(k).config.state == "scored"]
        ctx.panel.state.run_keys = keys
        remembered = remembered_run(ctx)
        key = ctx.panel.state.run_key or remembered
        key = key if key in keys else (keys[0] if keys else None)
        ctx.panel.state.run_key = key
        ctx.panel.state.has_scores = False
        try:
            ctx.panel.state.runs = runs_table(delegated_runs(ctx.dataset))
        except Exception:  # a FiftyOne without delegated operations: nothing to show
            ctx.panel.state.runs = ""
        sample_id = ctx.current_sample
        if key is None or sample_id is None:
            return
        pending = ctx.panel.state.pending_seek
        if pending and pending[0] == sample_id:
            ctx.panel.state.pending_seek = None
            self._seek(ctx, sample_id, pending[1])
        results = load_csl_results(ctx.dataset.select(sample_id), key)
        video = results.videos.get(sample_id)
        if video is None:
            return
        rows = suspect_segments(ctx.dataset.select(sample_id), key)
        segment = ctx.panel.state.segment
        if not segment or segment[0] != sample_id:
            undecided = [r for r in rows if not r["review"]]
            first = undecided[0] if undecided else None
            segment = [sample_id, first["first_frame"], first["last_frame"]] if first else None
            ctx.panel.state.segment = segment
        current = next((r for r in rows if segment and [r["sample_id"], r["first_frame"], r["last_frame"]] == segment),
                       None)  # fmt: skip
        given = [results.classes[i] for i in video.labels]
        suggested = [results.classes[i] for i in video.trajectory.mean_probs.argmax(1)]
        traces, layout = timeline_figure(
            video.frame_numbers, video.scores["csl"], given, suggested, video.segments, results.threshold,
            results.classes, (segment[1], segment[2]) if segment else None,
        )  # fmt: skip
        ctx.panel.state.has_scores = True
        ctx.panel.state.layout = layout
        ctx.panel.state.classes = results.classes
        ctx.panel.state.summary = (
            f"**{len(video.segments)}** suspect segment(s) in this video; max CSL "
            f"**{float(video.scores['csl'].max()):.2f}**, threshold {results.threshold:.2f} (run `{key}`)"
        )
        ctx.panel.state.current = self._describe(current)
        ctx.panel.state.can_accept = bool(current and current["suggested_label"] not in (None, current["given_label"]))
        ctx.panel.state.review = review_line(review_counts(ctx.dataset, key))  # consistent: read just above
        try:
            ctx.panel.state.changed = len(changed_videos(ctx.dataset, key))
        except CSLError:
            ctx.panel.state.changed = 0
        ctx.panel.data.timeline = traces

    @staticmethod
    def _describe(row) -> str:
        if row is None:
            return "No suspect segment chosen in this video: press **Next** to go to the next undecided one."
        suggestion = row["suggested_label"] if row["suggested_label"] not in (None, row["given_label"]) else "none"
        state = f" - **{row['review']}**" if row["review"] else ""
        return (
            f"**Frames {row['first_frame']}-{row['last_frame']}**: {row['error_type']}, given "
            f"**{row['given_label']}**, suggested **{suggestion}**, mean CSL {row['mean_csl']:.2f}{state}"
        )

    def render(self, ctx):
        panel = types.Object()
        s = ctx.panel.state
        keys = s.run_keys or []
        if len(keys) > 1:
            panel.enum("run_key", keys, default=s.run_key, label="Run", on_change=self.on_change_run)
        active = s.runs and any(f"| {state} |" in s.runs for state in ("queued", "scheduled", "running"))
        if active:  # a queued or running audit comes first
            panel.md(s.runs, name="runs")
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
                actions.btn("accept", label="Accept suggestion", icon="check", variant="contained",
                            disabled=not s.can_accept, on_click=self.on_accept)  # fmt: skip
                actions.btn("keep", label="Keep given label", icon="block", on_click=self.on_keep)
                actions.btn("reviewed", label="Mark reviewed", icon="visibility", on_click=self.on_reviewed)
                actions.enum("relabel", s.classes or [], label="Relabel as", on_change=self.on_relabel,
                             view=types.DropdownView())  # fmt: skip
            undo = panel.h_stack("history", align_x="left", gap=1)
            undo.btn("undo", label="Undo last decision", icon="undo", on_click=self.on_undo)
            if s.changed:
                undo.btn("refresh", label=f"Refresh scores of {s.changed} fixed video(s)", icon="refresh",
                         on_click=self.on_refresh)  # fmt: skip
            if s.review:
                panel.md(s.review, name="review")
            panel.plot(
                "timeline", layout=s.layout, config={"displayModeBar": False, "responsive": True},
                on_click=self.on_plot_click, componentsProps={"plotly": {"useResizeHandler": True}},
            )  # fmt: skip
        if s.runs and not active:
            panel.md(s.runs, name="runs")
        return types.Property(
            panel, view=types.GridView(orientation="vertical", align_x="stretch", height=100, width=100)
        )
