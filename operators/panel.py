"""The CSL timeline panel: the current video's CSL over time, with flagged
segments shaded and the given vs suggested labels as tracks."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.access import load_csl_results
from ..plugin.record import list_csl_runs

EMPTY_MESSAGE = (
    "### No CSL for this video yet\n\n"
    "Run **CSL: audit video labels** from the operator browser (or **CSL: replay checkpoints** "
    "with a trained run) to score its frames."
)


def timeline_figure(frame_numbers, csl, given, suggested, segments, threshold, classes):
    """Plotly traces and layout of one video's timeline (plain dicts)."""
    frames = [int(f) for f in frame_numbers]
    traces = [
        {"x": frames, "y": [float(v) for v in csl], "type": "scatter", "mode": "lines", "name": "CSL"},
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
            "type": "rect", "xref": "x", "yref": "paper", "x0": s.first - 0.5, "x1": s.last + 0.5,
            "y0": 0, "y1": 1, "fillcolor": "rgba(220, 50, 50, 0.18)", "line": {"width": 0},
        }
        for s in segments
    ] + [
        {
            "type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold,
            "line": {"dash": "dot", "width": 1, "color": "gray"},
        }
    ]  # fmt: skip
    layout = {
        "title": {"text": "CSL over frames (shaded: suspect segments; dotted: threshold)"},
        "width": 960,
        "height": 600,
        "margin": {"l": 90, "r": 20, "t": 40, "b": 40},
        "xaxis": {"title": {"text": "frame"}},
        "yaxis": {"title": {"text": "CSL"}, "domain": [0.42, 1.0]},
        "yaxis2": {"domain": [0.0, 0.32], "type": "category", "categoryorder": "array", "categoryarray": classes},
        "shapes": shapes,
        "showlegend": True,
        "legend": {"orientation": "h"},
    }
    return traces, layout


class CSLTimelinePanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="csl_timeline",
            label="CSL timeline",
            surfaces="modal",
            help_markdown="CSL of the current video over time, with suspect segments and suggested labels",
        )

    def on_load(self, ctx):
        self._update(ctx)

    def on_change_current_sample(self, ctx):
        self._update(ctx)

    def on_change_run(self, ctx):
        self._update(ctx)

    def _update(self, ctx):
        keys = [k for k in list_csl_runs(ctx.dataset) if ctx.dataset.get_run_info(k).config.state == "scored"]
        ctx.panel.state.run_keys = keys
        sample_id = ctx.current_sample
        key = ctx.panel.state.run_key if ctx.panel.state.run_key in keys else (keys[0] if keys else None)
        ctx.panel.state.run_key = key
        ctx.panel.state.has_scores = False
        if key is None or sample_id is None:
            return
        results = load_csl_results(ctx.dataset.select(sample_id), key)
        video = results.videos.get(sample_id)
        if video is None:
            return
        given = [results.classes[i] for i in video.labels]
        suggested = [results.classes[i] for i in video.trajectory.mean_probs.argmax(1)]
        traces, layout = timeline_figure(
            video.frame_numbers, video.scores["csl"], given, suggested, video.segments, results.threshold,
            results.classes,
        )  # fmt: skip
        ctx.panel.state.has_scores = True
        ctx.panel.state.layout = layout
        ctx.panel.state.summary = (
            f"**{len(video.segments)}** suspect segment(s); max CSL **{float(video.scores['csl'].max()):.2f}**, "
            f"threshold {results.threshold:.2f} (run `{key}`)"
        )
        ctx.panel.data.timeline = traces

    def render(self, ctx):
        panel = types.Object()
        keys = ctx.panel.state.run_keys or []
        if len(keys) > 1:
            panel.enum("run_key", keys, default=ctx.panel.state.run_key, label="Run", on_change=self.on_change_run)
        if not ctx.panel.state.has_scores:
            panel.md(EMPTY_MESSAGE, name="empty")
        else:
            panel.md(ctx.panel.state.summary or "", name="summary")
            panel.plot(
                "timeline",
                layout=ctx.panel.state.layout,
                config={"displayModeBar": False},
            )
        return types.Property(panel, view=types.GridView(orientation="vertical", height=100, width=100))
