"""Speed, memory and storage of an audit, measured on this machine in one run.

Every figure is a ratio or a size from the same run, so it says something on
another machine too. Sections (each memory figure is the peak RSS of a fresh
child process that does only that work):

- ``matmul``: this machine's float32 matrix-product rate (GFLOP/s)
- ``replay``: stacked replay (all checkpoints of a fold in one pass, video by
  video) against the plain loop (load a checkpoint, run every video, next),
  equality of the losses, and the head's FLOP rate against ``matmul``
- ``writes``: the product's frame write against a raw ``pymongo`` bulk of
  the same updates (the database's own limit), and a ``sample.save()`` loop
- ``checkpoints``: bytes per epoch, float32 and float16
- ``features``: decode and backbone frames per second, and the cache
- ``audit``: 300,000 frames (synthetic features, injected errors), 30
  checkpoints: wall time by stage and peak RSS
- ``scaling``: replay time and peak RSS at three frame counts and three
  checkpoint counts; training time per epoch at the three frame counts

Usage::

    python benchmarks/speed.py            # everything, ~15 minutes on 2 CPU cores
    python benchmarks/speed.py --quick    # smaller sizes, ~3 minutes
    python benchmarks/speed.py --only writes features   # re-measure those sections into speed.json

Writes ``benchmarks/results/speed.json`` (``speed-quick.json`` with
``--quick``) and prints the README's table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
NUM_CLASSES = 5


# --- helpers (run in children) ---------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KB


def _procedure_features(num_videos, frames, dim, seed=0, error_rate=0.0):
    """Videos of NUM_CLASSES phases in order; each phase has its own feature
    centre, each video its own offset. ``error_rate`` of each video's frames
    get another phase's label in one contiguous segment."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_CLASSES, dim)).astype(np.float32)
    features, labels, errors = [], [], []
    for _ in range(num_videos):
        bounds = np.sort(rng.choice(np.arange(1, frames), NUM_CLASSES - 1, replace=False))
        y = np.searchsorted(bounds, np.arange(frames), side="right")
        x = centres[y] + 0.3 * rng.normal(size=dim).astype(np.float32)
        x += rng.normal(size=(frames, dim)).astype(np.float32)
        wrong = np.zeros(frames, bool)
        n = int(error_rate * frames)
        if n:
            start = int(rng.integers(0, frames - n))
            wrong[start : start + n] = True
            y = y.copy()
            y[wrong] = (y[wrong] + rng.integers(1, NUM_CLASSES)) % NUM_CLASSES
        features.append(x.astype(np.float32))
        labels.append(y.astype(np.int64))
        errors.append(wrong)
    return features, labels, errors


def _synthetic_run(run_dir, dim, num_checkpoints, half=False, model="transformer"):
    """A run directory with ``num_checkpoints`` heads of one fold (random
    weights: replay costs the same whatever the weights)."""
    import torch
    from fiftyone_csl.models import build_head
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.manifest import Manifest

    config = train.TrainConfig(model=model, epochs=num_checkpoints, half_checkpoints=half)
    classes = [str(i) for i in range(NUM_CLASSES)]
    manifest = Manifest(None, None, None, classes, dim, {}, config.to_dict(), [[]], checkpoints=[[]])
    os.makedirs(os.path.join(run_dir, "fold_00"), exist_ok=True)
    torch.manual_seed(0)
    for e in range(num_checkpoints):
        head = build_head(model, dim, NUM_CLASSES)
        head.norm.fit(torch.randn(64, dim))
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in head.state_dict().items()}
        relpath = f"fold_00/epoch_{e + 1:04d}.pt"
        torch.save(state, os.path.join(run_dir, relpath))
        manifest.record_file(run_dir, relpath)
        manifest.checkpoints[0].append(relpath)
    manifest.save(run_dir)
    return manifest


def _attention_flops(manifest, num_checkpoints, frames):
    """Multiply-adds x 2 of Q K^T and of the weighted sum of V, over the
    windows a replay cuts a video into."""
    window = manifest.config["max_frames"]
    hidden, layers = 64, 2  # the default transformer
    full, rest = divmod(frames, window)
    return layers * num_checkpoints * 4 * hidden * (full * window**2 + rest**2)


def child_matmul(size=2048, repeats=5):
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return {"size": size, "gflops": round(2 * size**3 / best / 1e9, 1), "threads": torch.get_num_threads()}


def child_replay(num_videos, frames, dim, num_checkpoints):
    import numpy as np
    import torch
    from fiftyone_csl.plugin.core.replay import Replayer, replay_fold_naive
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays
    from torch.utils.flop_counter import FlopCounterMode

    features, labels, _ = _procedure_features(num_videos, frames, dim)
    sequences = sequences_from_arrays(features, labels)
    with tempfile.TemporaryDirectory() as run_dir:
        manifest = _synthetic_run(run_dir, dim, num_checkpoints)
        ckpts = manifest.checkpoints[0]
        cpu = torch.device("cpu")
        out = {"videos": num_videos, "frames_per_video": frames, "dim": dim, "checkpoints": num_checkpoints}

        started = time.perf_counter()
        naive = replay_fold_naive(sequences, ckpts, run_dir, manifest, cpu, batch_size=1)
        out["naive_per_video_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        replay_fold_naive(sequences, ckpts, run_dir, manifest, cpu, batch_size=8)
        out["naive_batched_videos_s"] = round(time.perf_counter() - started, 3)

        started = time.perf_counter()
        replayer = Replayer(run_dir, manifest, cpu, precision="fp32")
        stacked = {s.sample_id: replayer.trajectory(s, [0]) for s in sequences}
        out["stacked_s"] = round(time.perf_counter() - started, 3)
        out["max_abs_loss_difference"] = float(
            max(np.abs(stacked[s.sample_id].loss - naive[s.sample_id].loss).max() for s in sequences)
        )

        started = time.perf_counter()
        low = Replayer(run_dir, manifest, cpu, precision="bf16")
        for s in sequences:
            low.trajectory(s, [0])
        out["stacked_bf16_s"] = round(time.perf_counter() - started, 3)

        # the head's arithmetic rate: FLOPs of one pass of the stacked head
        # (weights already loaded) over its time. torch counts the matrix
        # products; the attention kernel's products are added by formula.
        counter = FlopCounterMode(display=False)
        with counter:
            for s in sequences:
                replayer.logits(0, s.features)
        flops = counter.get_total_flops() + sum(_attention_flops(manifest, num_checkpoints, len(s)) for s in sequences)
        started = time.perf_counter()
        for s in sequences:
            replayer.logits(0, s.features)
        seconds = time.perf_counter() - started
        out["head_gflops"] = round(flops / seconds / 1e9, 1)
    out["speedup_vs_naive_per_video"] = round(out["naive_per_video_s"] / out["stacked_s"], 2)
    out["speedup_vs_naive_batched_videos"] = round(out["naive_batched_videos_s"] / out["stacked_s"], 2)
    out["bf16_speedup"] = round(out["stacked_s"] / out["stacked_bf16_s"], 2)
    return out


def child_writes(num_videos, frames):
    """The product's frame write (``write_frame_scores``) against the
    database's own limit for the same update: a raw ``pymongo`` bulk of
    ``UpdateOne`` by (sample, frame number), unordered, the same values and
    the same ``last_modified_at`` stamp FiftyOne sets; and against the old
    comparison, a ``sample.save()`` loop."""
    from datetime import datetime

    import fiftyone as fo
    import fiftyone.core.odm as foo
    import numpy as np
    from bson import ObjectId
    from fiftyone_csl.plugin.runs.fields import write_frame_scores
    from pymongo import UpdateOne

    dataset = fo.Dataset()
    samples = []
    for i in range(num_videos):
        sample = fo.Sample(filepath=f"/nonexistent/video_{i}.mp4")
        for f in range(1, frames + 1):
            sample.frames[f] = fo.Frame()
        samples.append(sample)
    dataset.add_samples(samples, progress=False)
    ids = dataset.values("id")
    rng = np.random.default_rng(0)
    values = {sid: {f: float(v) for f, v in enumerate(rng.random(frames), 1)} for sid in ids}
    total = num_videos * frames

    # the limit: read the frames' ids (one projection), then one unordered bulk of
    # UpdateOne by _id, 10,000 per call: nothing less can set a value on each frame
    coll = foo.get_db_conn()[dataset._frame_collection_name]

    def raw_write(name):
        dataset.add_frame_field(name, fo.FloatField)
        started = time.perf_counter()
        projection = coll.find({}, {"_sample_id": 1, "frame_number": 1})
        frame_ids = {(d["_sample_id"], d["frame_number"]): d["_id"] for d in projection}
        now = datetime.utcnow()
        ops = [
            UpdateOne({"_id": frame_ids[ObjectId(sid), f]}, {"$set": {name: v, "last_modified_at": now}})
            for sid, per in values.items()
            for f, v in per.items()
        ]
        for i in range(0, len(ops), 10_000):
            coll.bulk_write(ops[i : i + 10_000], ordered=False)
        return time.perf_counter() - started

    def product_write(name):
        started = time.perf_counter()
        write_frame_scores(dataset, name, {sid: (list(v), list(v.values())) for sid, v in values.items()})
        return time.perf_counter() - started

    raw, bulk = float("inf"), float("inf")
    for rep in range(3):  # alternated, best of three each: neither gets the warmer cache
        raw = min(raw, raw_write(f"raw{rep}"))
        bulk = min(bulk, product_write(f"bulk{rep}"))

    started = time.perf_counter()
    for sample in dataset.iter_samples():
        for number, frame in sample.frames.items():
            frame["loop"] = values[sample.id][number]
        sample.save()
    loop = time.perf_counter() - started
    got = dataset.values("frames.bulk0")
    same = got == dataset.values("frames.loop") == dataset.values("frames.raw0")
    dataset.delete()
    return {
        "videos": num_videos,
        "frames": total,
        "raw_pymongo_s": round(raw, 3),
        "raw_pymongo_frames_per_s": round(total / raw),
        "bulk_s": round(bulk, 3),
        "bulk_frames_per_s": round(total / bulk),
        "fraction_of_raw_rate": round(raw / bulk, 3),
        "save_loop_s": round(loop, 3),
        "speedup": round(loop / bulk, 1),
        "identical_values": same,
    }


def child_checkpoints():
    import torch

    out = {}
    for dim in (512, 1280):
        for half in (False, True):
            with tempfile.TemporaryDirectory() as run_dir:
                manifest = _synthetic_run(run_dir, dim, 3, half=half)
                per_fold = manifest.checkpoint_bytes(run_dir)
                params = sum(v.numel() for v in torch.load(
                    os.path.join(run_dir, manifest.checkpoints[0][0]), weights_only=True).values())  # fmt: skip
            out[f"d{dim}_{'fp16' if half else 'fp32'}"] = {
                "bytes_per_fold_epoch": per_fold,
                "bytes_per_epoch_5_folds": 5 * per_fold,
                "tensors_elements": params,
            }
    return out


def child_features(seconds_of_video=None):
    from fiftyone_csl.plugin.audit.demo import bikes_path
    from fiftyone_csl.plugin.audit.encoders import LazyEncoder
    from fiftyone_csl.plugin.audit.features import FeatureStats, video_features

    path = bikes_path()
    encoder = LazyEncoder("efficientnet-lite0", None, "cpu", "auto")
    encoder.build()
    stats = FeatureStats()
    stats.runtime = encoder.runtime
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        video_features(path, encoder, "efficientnet-lite0", 1, cache, stats=stats, runtime=encoder.runtime)
        first = time.perf_counter() - started
        started = time.perf_counter()
        video_features(path, encoder, "efficientnet-lite0", 1, cache, stats=FeatureStats(), runtime=encoder.runtime)
        cached = time.perf_counter() - started
    out = stats.as_dict()
    out.update(first_s=round(first, 2), cached_s=round(cached, 4), cache_speedup=round(first / cached, 1))
    return out


def child_audit(num_videos, frames, dim, epochs):
    import numpy as np
    import torch
    from fiftyone_csl import compute_csl_arrays
    from fiftyone_csl.plugin.core.metrics import frame_auroc_ap

    torch.set_num_threads(torch.get_num_threads())
    features, labels, errors = _procedure_features(num_videos, frames, dim, seed=1, error_rate=0.05)
    stage_starts = {}

    def progress(state):
        stage_starts.setdefault(state.label, time.perf_counter())

    started = time.perf_counter()
    results = compute_csl_arrays(features, labels, epochs=epochs, cross_fit=False, device="cpu", progress=progress)
    total = time.perf_counter() - started
    stage_starts["end"] = time.perf_counter()
    order = sorted(stage_starts, key=stage_starts.get)
    stages = {a: round(stage_starts[b] - stage_starts[a], 1) for a, b in zip(order, order[1:])}
    _, _, scores = results.frame_scores("csl")
    auroc = frame_auroc_ap(scores, np.concatenate(errors))["auroc"]
    return {
        "videos": num_videos,
        "frames": num_videos * frames,
        "dim": dim,
        "checkpoints": epochs,
        "seconds": round(total, 1),
        "stage_seconds": stages,
        "peak_rss_mb": round(_peak_rss_mb()),
        "feature_mb": round(num_videos * frames * dim * 4 / 2**20),
        "auroc": round(float(auroc), 4),
    }


def child_replay_scaling(num_videos, frames, dim, num_checkpoints):
    import torch
    from fiftyone_csl.plugin.core.replay import Replayer
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    features, labels, _ = _procedure_features(num_videos, frames, dim)
    sequences = sequences_from_arrays(features, labels)
    before = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as run_dir:
        manifest = _synthetic_run(run_dir, dim, num_checkpoints)
        started = time.perf_counter()
        replayer = Replayer(run_dir, manifest, torch.device("cpu"), precision="fp32")
        for s in sequences:
            replayer.trajectory(s, [0])
        seconds = time.perf_counter() - started
    return {
        "frames": num_videos * frames,
        "checkpoints": num_checkpoints,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb()),
        "rss_before_replay_mb": round(before),
    }


def child_train_epoch(num_videos, frames, dim, epochs=2):
    import torch
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    features, labels, _ = _procedure_features(num_videos, frames, dim)
    sequences = sequences_from_arrays(features, labels)
    with tempfile.TemporaryDirectory() as run_dir:
        config = train.TrainConfig(epochs=epochs, cross_fit=False)
        started = time.perf_counter()
        train.train_fold(sequences, dim, NUM_CLASSES, config, run_dir, 0, {"files": {}}, torch.device("cpu"))
        seconds = time.perf_counter() - started
    return {"frames": num_videos * frames, "seconds_per_epoch": round(seconds / epochs, 2)}


CHILDREN = {name[len("child_") :]: fn for name, fn in globals().items() if name.startswith("child_")}


def run_child(name, **kwargs) -> dict:
    """Runs one measurement in a fresh Python process (clean peak RSS)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[speed] {name} {kwargs}: {result}", flush=True)
    return result


# --- the run -------------------------------------------------------------------------------


def main_only(sections: list):
    """Re-measures the named sections (``writes``, ``features``) and merges
    them into ``speed.json``; the other sections keep their last run."""
    path = os.path.join(RESULTS, "speed.json")
    with open(path) as f:
        out = json.load(f)
    for name in sections:
        if name == "writes":
            out["writes"] = run_child("writes", num_videos=40, frames=500)
        elif name == "features":
            out["features"] = run_child("features")
        else:
            raise SystemExit(f"--only takes writes or features; got {name}")
        out.setdefault("remeasured", {})[name] = time.strftime("%Y-%m-%d")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"[speed] merged {sections} into {path}")


def main(quick: bool):
    scale = 0.1 if quick else 1.0
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "quick": quick,
    }
    started = time.time()
    out["matmul"] = run_child("matmul")
    out["replay_short_videos"] = run_child("replay", num_videos=24, frames=200, dim=1280, num_checkpoints=30)
    out["replay_long_videos"] = run_child(
        "replay", num_videos=4 if quick else 8, frames=2000, dim=1280, num_checkpoints=30
    )
    for key in ("replay_short_videos", "replay_long_videos"):
        out[key]["head_fraction_of_matmul"] = round(out[key]["head_gflops"] / out["matmul"]["gflops"], 3)
    out["writes"] = run_child("writes", num_videos=40, frames=500)
    out["checkpoints"] = run_child("checkpoints")
    out["features"] = run_child("features")
    frames = [int(f * scale) for f in (30_000, 100_000, 300_000)]
    out["audit"] = run_child("audit", num_videos=frames[-1] // 1000, frames=1000, dim=512, epochs=30)
    out["scaling_frames"] = [
        run_child("replay_scaling", num_videos=n // 1000, frames=1000, dim=512, num_checkpoints=30) for n in frames
    ]
    out["scaling_checkpoints"] = [
        run_child("replay_scaling", num_videos=frames[1] // 1000, frames=1000, dim=512, num_checkpoints=e)
        for e in (10, 30, 90)
    ]
    out["scaling_train"] = [run_child("train_epoch", num_videos=n // 1000, frames=1000, dim=512) for n in frames]
    out["seconds"] = round(time.time() - started)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "speed-quick.json" if quick else "speed.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    print(f"[speed] wrote {path} in {out['seconds']} s")


def table(r) -> str:
    short, long_ = r["replay_short_videos"], r["replay_long_videos"]
    audit = r["audit"]
    ck = r["checkpoints"]
    feats = r["features"]
    rows = [
        ("matrix product rate (float32, 2048²)", f"{r['matmul']['gflops']:.0f} GFLOP/s"),
        (
            "stacked replay vs plain loop, 24 videos × 200 frames, 30 checkpoints",
            f"{short['speedup_vs_naive_per_video']}× (per-video loop), "
            f"{short['speedup_vs_naive_batched_videos']}× (videos batched by 8)",
        ),
        (
            f"same, {long_['videos']} videos × 2000 frames",
            f"{long_['speedup_vs_naive_per_video']}× / {long_['speedup_vs_naive_batched_videos']}×",
        ),
        (
            "largest loss difference, stacked vs plain",
            f"{max(short['max_abs_loss_difference'], long_['max_abs_loss_difference']):.1e}",
        ),
        (
            "temporal head's rate / matrix product rate",
            f"{short['head_fraction_of_matmul']:.0%} (short videos), {long_['head_fraction_of_matmul']:.0%} (long)",
        ),
        ("bfloat16 replay vs float32 (long videos)", f"{long_['bf16_speedup']}×"),
        (
            f"frame write / raw pymongo bulk of the same updates ({r['writes']['frames']:,} frames)",
            f"{r['writes'].get('fraction_of_raw_rate', float('nan')):.2f} ({r['writes']['bulk_frames_per_s']:,} "
            f"vs {r['writes'].get('raw_pymongo_frames_per_s', 0):,} frames/s)",
        ),
        (
            "checkpoint bytes per fold and epoch (D=1280, fp32 / fp16)",
            f"{ck['d1280_fp32']['bytes_per_fold_epoch'] / 1e6:.2f} / "
            f"{ck['d1280_fp16']['bytes_per_fold_epoch'] / 1e6:.2f} MB",
        ),
        (
            "same, per epoch with 5 folds (fp32 / fp16)",
            f"{ck['d1280_fp32']['bytes_per_epoch_5_folds'] / 1e6:.2f} / "
            f"{ck['d1280_fp16']['bytes_per_epoch_5_folds'] / 1e6:.2f} MB",
        ),
        (
            "decode / backbone (EfficientNet-Lite0, CPU)",
            f"{feats['decode_fps']:.0f} / {feats['backbone_fps']:.0f} frames/s",
        ),
        ("feature cache hit vs first extraction", f"{feats['cache_speedup']:.0f}×"),
        (
            f"audit of {audit['frames']:,} frames, {audit['checkpoints']} checkpoints (D={audit['dim']})",
            f"{audit['seconds'] / 60:.1f} min, peak RSS {audit['peak_rss_mb'] / 1024:.2f} GB, "
            f"AUROC {audit['auroc']:.3f}",
        ),
        (
            "replay time / training time (same audit)",
            f"{audit['stage_seconds'].get('replay', 0) / max(audit['stage_seconds'].get('train', 1), 1e-9):.2f}",
        ),
    ]
    lines = ["| measure | this machine |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| replay | frames | checkpoints | seconds | peak RSS (MB) |", "|---|---|---|---|---|"]
    for row in r["scaling_frames"] + r["scaling_checkpoints"]:
        lines.append(f"| | {row['frames']:,} | {row['checkpoints']} | {row['seconds']} | {row['peak_rss_mb']} |")
    lines += ["", "| training | frames | seconds per epoch |", "|---|---|---|"]
    for row in r["scaling_train"]:
        lines.append(f"| | {row['frames']:,} | {row['seconds_per_epoch']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", nargs="+", help="re-measure these sections (writes, features) into speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("kwargs", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](**json.loads(args.kwargs or "{}"))))
    elif args.only:
        main_only(args.only)
    else:
        main(args.quick)
