"""How an audit's time, memory and disk grow with the dataset.

Two parts, each size in a process of its own (peak RSS is that process's):

- ``frames``: synthetic embeddings the models can learn (8 phases in a
  chain, class means + noise, D = 512, videos of 30-120 minutes at 1 fps,
  a tenth of the videos with a mislabelled block), stored as float16
  memory-mapped blocks, one file per video, audited with the cheap preset
  (2 folds, 10 epochs) through ``compute_csl_arrays``; beside it one plain
  training run of the same head on the same frames (the unit of cost).
  Reports wall time per stage, time per frame, peak RSS, the disk of the
  features and of the run (checkpoints, trajectories) and CSL's frame AUROC.
- ``videos``: FiftyOne datasets of N short videos (30 frames, D = 32), audited
  once; then what a reviewer's loop costs per video: ``changed_videos`` of one
  video, ``refresh_scores`` of one fixed video (median of 5), one panel step (the video's
  timeline and its suspects), a panel click (the engine's part of one Keep: decision,
  kept suspect list, counts, table, next timeline and plot, changed count; median of 7)
  and the database size.

Usage::

    python benchmarks/scale.py --part frames --sizes 300000 1000000
    python benchmarks/scale.py --part videos --sizes 100 1000

Writes ``benchmarks/results/scale.json`` (each part's rows replace that
part's earlier rows) and prints the tables of benchmarks/README.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "scale.json")
DIM, CLASSES = 512, 8
PRESET = dict(folds=2, epochs=10)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def folder_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def synthetic_videos(total_frames: int, folder: str, seed: int = 0):
    """Float16 feature files (memory-mapped when read back), given labels and
    the error mask of each video, whose lengths (1,800-7,200 frames) add up
    to about ``total_frames``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (CLASSES, DIM)).astype(np.float32)
    features, given, errors, done, index = [], [], [], 0, 0
    while done < total_frames:
        length = int(min(rng.integers(1800, 7201), max(total_frames - done, 600)))
        cuts = np.sort(rng.choice(np.arange(1, length), CLASSES - 1, replace=False))
        clean = np.zeros(length, np.int64)
        for k, c in enumerate(cuts):
            clean[c:] = k + 1
        labels = clean.copy()
        if index % 10 == 0:  # a mislabelled block of 60-240 frames
            size = int(rng.integers(60, 241))
            start = int(rng.integers(0, length - size))
            labels[start : start + size] = (clean[start : start + size] + 1 + rng.integers(0, CLASSES - 1)) % CLASSES
        path = os.path.join(folder, f"video_{index:05d}.npy")
        block = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(length, DIM))
        for start in range(0, length, 4096):  # written in blocks: never the whole video in float32
            part = clean[start : start + 4096]
            block[start : start + len(part)] = means[part] + rng.normal(0, 1.0, (len(part), DIM)).astype(np.float32)
        block.flush()
        del block
        features.append(np.load(path, mmap_mode="r"))
        given.append(labels)
        errors.append(labels != clean)
        done += length
        index += 1
    return features, given, errors


def child_frames(total_frames: int) -> dict:
    import torch
    from fiftyone_csl import compute_csl_arrays
    from fiftyone_csl.plugin.core import metrics, train
    from fiftyone_csl.plugin.core.manifest import Manifest
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    with tempfile.TemporaryDirectory(prefix="fcsl-scale-") as work:
        started = time.perf_counter()
        features, given, errors = synthetic_videos(total_frames, work)
        frames = int(sum(len(y) for y in given))
        data_seconds = time.perf_counter() - started
        starts = {}

        def progress(state):
            starts.setdefault(state.label, time.perf_counter())

        run_dir = os.path.join(work, "run")
        started = time.perf_counter()
        results = compute_csl_arrays(features, given, device="cpu", run_dir=run_dir, progress=progress, seed=0,
                                     **PRESET)  # fmt: skip
        end = time.perf_counter()
        order = sorted(starts, key=starts.get)
        bounds = [starts[n] for n in order] + [end]
        stages = {n: round(bounds[i + 1] - bounds[i], 1) for i, n in enumerate(order)}
        audit_rss = peak_rss_mb()
        csl = [results.videos[name].scores["csl"] for name in results.videos]
        auroc = float(metrics.frame_auroc_ap(np.concatenate(csl), np.concatenate(errors))["auroc"])
        disk = {
            "features": folder_bytes(work) - folder_bytes(run_dir),
            "checkpoints": sum(os.path.getsize(os.path.join(run_dir, r)) for f in results_manifest(run_dir) for r in f),
            "trajectories": folder_bytes(os.path.join(run_dir, "trajectories")),
        }
        sequences = sequences_from_arrays(features, given)
        config = train.TrainConfig(epochs=PRESET["epochs"], cross_fit=False, seed=0)
        manifest = Manifest(None, None, None, [str(i) for i in range(CLASSES)], DIM, {}, config.to_dict(), [[]])
        with tempfile.TemporaryDirectory(dir=work) as plain_dir:
            started = time.perf_counter()
            train.train_fold(sequences, DIM, CLASSES, config, plain_dir, 0, manifest, torch.device("cpu"))
            plain = time.perf_counter() - started
    seconds = end - bounds[0] if bounds else end
    return dict(
        frames=frames, videos=len(given), seconds=round(seconds, 1), stages=stages,
        microseconds_per_frame=round(1e6 * seconds / frames, 2), plain_training_seconds=round(plain, 1),
        cost_vs_plain=round(seconds / plain, 2), peak_rss_mb=round(audit_rss), auroc=round(auroc, 4),
        disk_mb={k: round(v / 1e6, 1) for k, v in disk.items()}, synthetic_data_seconds=round(data_seconds, 1),
    )  # fmt: skip


def results_manifest(run_dir):
    with open(os.path.join(run_dir, "manifest.json")) as f:
        return json.load(f)["checkpoints"]


def child_videos(num_videos: int) -> dict:
    import fiftyone as fo
    import fiftyone_csl as fcsl
    from fiftyone_csl.plugin.review.segments import suspect_segments
    from fiftyone_csl.plugin.review.timeline import video_timeline

    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, (4, 32))
    dataset = fo.Dataset()
    samples = []
    for i in range(num_videos):
        sample = fo.Sample(filepath=f"/nonexistent/video_{i:05d}.mp4")
        for n in range(1, 31):
            k = min((n - 1) // 8, 3)
            label = k if not (i % 5 == 0 and 10 <= n <= 13) else (k + 1) % 4
            sample.frames[n] = fo.Frame(
                phase=fo.Classification(label=f"p{label}"), emb=(means[k] + rng.normal(0, 0.5, 32)).tolist()
            )
        samples.append(sample)
    dataset.add_samples(samples, progress=False)
    started = time.perf_counter()
    fcsl.compute_csl(dataset, "phase", "csl", embeddings_field="emb", epochs=3, folds=2, seed=0)
    audit = time.perf_counter() - started
    one = dataset.first()

    def timed(call, repeats=3):
        best = None
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            took = time.perf_counter() - started
            best = took if best is None else min(best, took)
        return round(best, 3)

    changed = timed(lambda: fcsl.changed_videos(dataset.select(one.id), "csl"))
    refreshes = []
    for _ in range(5):  # each after a fix of one frame: the median, the box is noisy
        frame = one.frames[12]
        frame["phase"].label = "p3" if frame["phase"].label != "p3" else "p0"
        one.save()
        started = time.perf_counter()
        fcsl.refresh_scores(dataset.select(one.id), "csl")
        refreshes.append(time.perf_counter() - started)
    refresh = round(sorted(refreshes)[len(refreshes) // 2], 3)
    timeline = timed(lambda: video_timeline(dataset, "csl", one.id))
    rows = timed(lambda: suspect_segments(dataset, "csl"))
    clicks = panel_clicks(dataset)
    stats = dataset.stats(include_media=False)
    out = dict(
        videos=num_videos, frames=30 * num_videos, audit_seconds=round(audit, 1), changed_one_seconds=changed,
        refresh_one_seconds=refresh, timeline_seconds=timeline, suspect_list_seconds=rows, panel_click_seconds=clicks,
        database_mb=round(stats["samples_bytes"] / 1e6 + stats.get("frames_bytes", 0) / 1e6, 1),
        peak_rss_mb=round(peak_rss_mb()),
    )  # fmt: skip
    dataset.delete()
    return out


def panel_clicks(dataset, clicks: int = 7) -> float:
    """The median over ``clicks`` of what the panel's engine does for one
    click of Keep: the decision, the run's suspect list (kept between
    clicks), the counts and table, the next suspect's timeline and plot, and
    the count of videos to refresh. The first read of the list (the panel's
    load) is not counted."""
    import fiftyone_csl as fcsl
    from fiftyone_csl.operators.panel import suspect_rows, timeline_figure
    from fiftyone_csl.plugin.review.reports import review_counts
    from fiftyone_csl.plugin.review.segments import kept_suspect_segments, relabelled_videos
    from fiftyone_csl.plugin.review.timeline import video_timeline
    from fiftyone_csl.plugin.runs.record import RunNames, get_run_config

    rows = kept_suspect_segments(dataset, "csl")
    took = []
    for _ in range(clicks):
        row = next(r for r in rows if not r["review"])
        started = time.perf_counter()
        fcsl.review_segment(dataset, "csl", row["sample_id"], row["first_frame"], row["last_frame"], "keep")
        rows = kept_suspect_segments(dataset, "csl")
        after = next(r for r in rows if not r["review"])
        review_counts(dataset, "csl", _rows=rows)
        suspect_rows(rows)
        timeline_figure(video_timeline(dataset, "csl", after["sample_id"]), (after["first_frame"], after["last_frame"]))
        touched = set(relabelled_videos(dataset, RunNames.of(get_run_config(dataset, "csl")))) | {after["sample_id"]}
        fcsl.changed_videos(dataset.select(sorted(touched)), "csl", cached=True)
        took.append(time.perf_counter() - started)
    return round(sorted(took)[len(took) // 2], 3)


def run_child(part: str, size: int) -> dict:
    args = [sys.executable, os.path.abspath(__file__), "--child", part, str(size)]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{part} {size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list, part: str) -> str:
    if part == "frames":
        lines = ["| frames | videos | audit (s) | µs/frame | train / replay / write (s) | plain training (s) | "
                 "audit / plain | peak RSS (MB) | features / checkpoints / trajectories (MB) | AUROC |",
                 "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            st, d = r["stages"], r["disk_mb"]
            lines.append(
                f"| {r['frames']:,} | {r['videos']} | {r['seconds']} | {r['microseconds_per_frame']} | "
                f"{st.get('train', '-')} / {st.get('replay', '-')} / {st.get('scores', st.get('write', '-'))} | "
                f"{r['plain_training_seconds']} | {r['cost_vs_plain']} | {r['peak_rss_mb']} | "
                f"{d['features']} / {d['checkpoints']} / {d['trajectories']} | {r['auroc']} |"
            )
        return "\n".join(lines)
    lines = ["| videos | frames | audit (s) | changed_videos, one (s) | refresh one fixed video (s) | "
             "panel: one video's timeline (s) | suspect list (s) | panel click: Keep (s) | database (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['videos']:,} | {r['frames']:,} | {r['audit_seconds']} | {r['changed_one_seconds']} | "
            f"{r['refresh_one_seconds']} | {r['timeline_seconds']} | {r['suspect_list_seconds']} | "
            f"{r.get('panel_click_seconds', '-')} | {r['database_mb']} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["frames", "videos"], default="frames")
    parser.add_argument("--sizes", nargs="+", type=int)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, size = args.child[0], int(args.child[1])
        print(json.dumps(child_frames(size) if part == "frames" else child_videos(size)))
        return
    sizes = args.sizes or ([300_000, 1_000_000] if args.part == "frames" else [100, 1000])
    rows = []
    for size in sizes:
        rows.append(run_child(args.part, size))
        print(json.dumps(rows[-1]), flush=True)
    saved = {}
    if os.path.isfile(RESULTS):
        with open(RESULTS) as f:
            saved = json.load(f)
    saved[args.part] = rows
    saved.setdefault("machine", {"cpus": os.cpu_count()})
    with open(RESULTS, "w") as f:
        json.dump(saved, f, indent=1)
    print(table(rows, args.part))


if __name__ == "__main__":
    main()
