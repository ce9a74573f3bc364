"""An audit fanned out over delegated workers: each part's time, and the wall
time projected for N machines from those measured times.

Builds the demo dataset (24 videos cut from bikes.mp4), queues
``compute_csl(..., workers=SHARDS)`` with a cold feature cache, and runs the
graph with one worker process (as ``fiftyone delegated launch`` would), so
each part's time is measured without contention. The graph records every
part's seconds; the projection for N machines schedules each stage's parts
longest first onto N machines (the stages run one after another, as their
dependencies require) and adds nothing for the database or shared storage,
which it does not measure.

Usage::

    python benchmarks/fanout.py              # about 4 minutes on 2 CPU cores
    python benchmarks/fanout.py --shards 4

Writes ``benchmarks/results/fanout.json`` and prints the README's table.
"""

import argparse
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ("features", "train", "replay", "merge")
WORKER = """
import sys, time
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone_csl.plugin.audit import fanout

graph_id, dataset_name = sys.argv[1:3]
service = DelegatedOperationService()
while fanout.audit_graph(graph_id)["state"] == "running":
    if not service.execute_queued_operations(dataset_name=dataset_name, limit=1):
        time.sleep(0.2)
"""


def makespan(seconds: list, machines: int) -> float:
    """Longest-first list scheduling of the parts onto ``machines``."""
    loads = [0.0] * machines
    heapq.heapify(loads)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + s)
    return max(loads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    # the workers find the plugin (this repository) through a plugins directory
    plugins = tempfile.mkdtemp(prefix="fcsl-plugins-")
    os.symlink(os.path.dirname(HERE), os.path.join(plugins, "fiftyone-csl"))
    os.environ["FIFTYONE_PLUGINS_DIR"] = plugins
    import fiftyone_csl as fcsl
    from fiftyone_csl.plugin.audit.demo import build_demo_dataset

    dataset = build_demo_dataset("csl-bench-fanout", overwrite=True, persistent=True)
    try:
        with tempfile.TemporaryDirectory() as cache:
            started = time.time()
            graph = fcsl.compute_csl(dataset, "phase", "fan", workers=args.shards, epochs=args.epochs,
                                     cache_dir=cache, overwrite=True)  # fmt: skip
            worker = subprocess.run([sys.executable, "-c", WORKER, graph["graph_id"], dataset.name],
                                    env=dict(os.environ), capture_output=True, text=True)  # fmt: skip
            wall = time.time() - started
        state = fcsl.audit_graph(graph["graph_id"])
        if worker.returncode != 0 or state["state"] != "completed":
            raise RuntimeError(f"graph {state['state']}: {state['error']}\n{worker.stderr[-3000:]}")
        with tempfile.TemporaryDirectory() as cache:  # the same audit in one call, for the overhead
            started = time.time()
            fcsl.compute_csl(dataset, "phase", "inline", epochs=args.epochs, cache_dir=cache, progress=False)
            inline = time.time() - started
        parts = {stage: [state["seconds"][stage][str(i)] for i in range(state["counts"][stage])] for stage in STAGES}
        projected = {
            n: {stage: makespan(parts[stage], n) for stage in STAGES} for n in (1, 2, 4, 8) if n <= max(args.shards, 5)
        }
        out = {
            "benchmark": "fanout",
            "command": " ".join(["python", "benchmarks/fanout.py", *sys.argv[1:]]),
            "machine": {"cores": os.cpu_count()},
            "videos": len(dataset),
            "frames": dataset.count("frames"),
            "shards": args.shards,
            "epochs": args.epochs,
            "counts": state["counts"],
            "part_seconds": parts,
            "wall_seconds_one_worker": round(wall, 1),
            "wall_seconds_one_call": round(inline, 1),
            "sum_of_parts_seconds": round(sum(sum(v) for v in parts.values()), 1),
            "projected_wall_seconds": {n: round(sum(v.values()), 1) for n, v in projected.items()},
            "projected_stage_seconds": {n: {s: round(t, 1) for s, t in v.items()} for n, v in projected.items()},
        }
    finally:
        for key in ("fan", "inline"):
            if key in dataset.list_runs():
                fcsl.delete_csl_run(dataset, key)
        dataset.delete()
    path = os.path.join(HERE, "results", "fanout.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    print(f"[fanout] wrote {path}")


def table(r) -> str:
    lines = [
        f"{r['videos']} videos, {r['frames']:,} frames, {r['shards']} shards, {r['epochs']} epochs; one worker: "
        f"{r['wall_seconds_one_worker']} s wall, {r['sum_of_parts_seconds']} s in parts; the same audit in one "
        f"call: {r['wall_seconds_one_call']} s",
        "",
        "| stage | parts | seconds per part (min / max) |",
        "|---|---|---|",
    ]
    for stage in STAGES:
        v = r["part_seconds"][stage]
        lines.append(f"| {stage} | {len(v)} | {min(v):.1f} / {max(v):.1f} |")
    lines += ["", "| machines | projected wall time (s) | × one machine |", "|---|---|---|"]
    one = r["projected_wall_seconds"][1]
    for n, seconds in r["projected_wall_seconds"].items():
        lines.append(f"| {n} | {seconds} | {one / seconds:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
