"""The CUDA path against the CPU path, in one run, where a GPU exists.

Measures, on the same inputs in the same process:

- replay: 8 synthetic videos of 2,000 frames (D = 512) under 30 checkpoints of
  one fold, with the stacked replayer on the CPU (float32) and on CUDA
  (float32 and the default ``precision="auto"``, float16 autocast), and the
  largest loss difference between them;
- training: one epoch of the temporal head on the same videos;
- features: EfficientNet-Lite0 over 256 random frames, torch on CUDA against
  the CPU's default runtime (OpenVINO where installed), and the smallest
  cosine between their features.

Prints the ratios (CPU seconds / CUDA seconds) and writes
``benchmarks/results/gpu.json``. Without a GPU it says so and writes nothing:
the README's GPU figures say they were not measured.

Usage::

    python benchmarks/gpu.py
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def timed(call, repeats=3):
    import torch

    call()  # warm-up (kernels, allocator, autotuning)
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, out


def replay_and_training(cpu, cuda) -> dict:
    import speed
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.manifest import Manifest
    from fiftyone_csl.plugin.core.replay import Replayer
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    features, labels, _ = speed._procedure_features(8, 2000, 512)
    sequences = sequences_from_arrays(features, labels)
    out = {}
    with tempfile.TemporaryDirectory() as run_dir:
        manifest = speed._synthetic_run(run_dir, 512, 30)

        def replay(device, precision):
            replayer = Replayer(run_dir, manifest, device, precision=precision)
            return {s.sample_id: replayer.trajectory(s, [0]).loss for s in sequences}

        t_cpu, loss_cpu = timed(lambda: replay(cpu, "fp32"), repeats=1)
        t_gpu, loss_gpu = timed(lambda: replay(cuda, "fp32"))
        t_auto, loss_auto = timed(lambda: replay(cuda, "auto"))
        out["replay"] = dict(
            cpu_s=round(t_cpu, 3), cuda_fp32_s=round(t_gpu, 3), cuda_auto_s=round(t_auto, 3),
            ratio_fp32=round(t_cpu / t_gpu, 1), ratio_auto=round(t_cpu / t_auto, 1),
            max_loss_difference_fp32=float(max(np.abs(loss_cpu[k] - loss_gpu[k]).max() for k in loss_cpu)),
            max_loss_difference_auto=float(max(np.abs(loss_cpu[k] - loss_auto[k]).max() for k in loss_cpu)),
        )  # fmt: skip
    config = train.TrainConfig(epochs=1, cross_fit=False, seed=0)

    def one_epoch(device):
        classes = [str(i) for i in range(speed.NUM_CLASSES)]
        manifest = Manifest(None, None, None, classes, 512, {}, config.to_dict(), [[]])
        with tempfile.TemporaryDirectory() as folder:
            train.train_fold(sequences, 512, len(classes), config, folder, 0, manifest, device)

    t_cpu, _ = timed(lambda: one_epoch(cpu), repeats=1)
    t_gpu, _ = timed(lambda: one_epoch(cuda))
    out["training_epoch"] = dict(cpu_s=round(t_cpu, 3), cuda_s=round(t_gpu, 3), ratio=round(t_cpu / t_gpu, 1))
    return out


def features(cpu, cuda) -> dict:
    from fiftyone_csl.plugin.audit import encoders

    frames = np.random.default_rng(0).integers(0, 256, (256, 224, 224, 3), dtype=np.uint8)
    on_cpu, runtime = encoders.build_encoder("efficientnet-lite0", None, cpu, "auto")
    on_gpu, _ = encoders.build_encoder("efficientnet-lite0", None, cuda, "torch")
    t_cpu, f_cpu = timed(lambda: on_cpu(frames), repeats=1)
    t_gpu, f_gpu = timed(lambda: on_gpu(frames))
    cosine = (f_cpu * f_gpu).sum(1) / (np.linalg.norm(f_cpu, axis=1) * np.linalg.norm(f_gpu, axis=1))
    return dict(cpu_runtime=runtime, cpu_s=round(t_cpu, 3), cuda_s=round(t_gpu, 3), ratio=round(t_cpu / t_gpu, 1),
                min_cosine=round(float(cosine.min()), 5))  # fmt: skip


def main():
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the README says the GPU path was not run)")
        return
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    out.update(replay_and_training(cpu, cuda))
    out["features"] = features(cpu, cuda)
    with open(os.path.join(HERE, "results", "gpu.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
