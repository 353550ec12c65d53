"""The probe's share of a trial, and the cheap probe against the reference on the same codes.

    .venv/bin/python benchmarks/probe.py [--n 10000] [--epochs 5]

Fashion-MNIST (a stratified subsample of n training images; the search part is what the
search would see), conv2d candidates from spaces/image.yaml's range: a small code and the
largest code with the inputs passed through (the probe's worst case). Each candidate is
evaluated exactly as in a search (`search.objective.evaluate`, intermediate scores included)
with the `auto` probe, then the reference logistic regression is cross-validated on the same
codes. Writes benchmarks/results/probe.md (and probe.json)."""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
RESULTS = ROOT / "benchmarks" / "results"

CANDIDATES = {
    "conv2d code 64": {"code_size": 64, "include_input": False},
    "conv2d code 512 + inputs": {"code_size": 512, "include_input": True},
}


def candidate(code_size, include_input, epochs):
    layers = [{"filters": 32, "kernel_size": 3, "activation": "relu", "pool": True},
              {"filters": 64, "kernel_size": 3, "activation": "relu", "pool": True}]
    return {
        "family": "conv2d", "code_size": code_size, "include_input": include_input, "scaling": "minmax",
        "training": {"epochs": epochs, "batch_size": 128, "learning_rate": 1e-3, "optimizer": "adam", "patience": 4},
        "family_params": {"layers": layers, "code_activation": "linear", "batch_norm": False, "dropout": 0.0},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from search.quiet import import_keras_quietly

    keras = import_keras_quietly()
    from encoderkit.data import load_dataset
    from encoderkit.probe import cv_score, resolve_probe
    from encoderkit.transformer import AutoencoderTransformer
    from search.objective import evaluate
    from search.problem import make_problem
    from search.suggest import transformer_params

    problem = make_problem(load_dataset(f"fashion-mnist:n={args.n}"), probe="auto", folds=5)
    rows = []
    for name, settings in CANDIDATES.items():
        config = candidate(**settings, epochs=args.epochs)
        outcome = evaluate(problem, config, seed=0, report=lambda step, value: None)
        # The same codes again (same seed), scored by the reference probe.
        fitted = AutoencoderTransformer(**transformer_params(config, 0, problem.dataset.shape)).fit(problem.X)
        codes = fitted.transform(problem.X)
        started = time.perf_counter()
        reference, _ = cv_score(codes, problem.y, problem.metric, problem.folds, problem.seed,
                                "logistic_regression", problem.probe_jobs)
        reference_seconds = time.perf_counter() - started
        seconds = outcome["seconds"]
        total = sum(seconds.values())
        row = {
            "candidate": name, "code_width": codes.shape[1], "probe": outcome["probe"], "seconds": seconds,
            "trial_s": round(total, 1), "probe_share": round((seconds["probe"] + seconds["checkpoints"]) / total, 3),
            "cheap_cv": round(outcome["score"], 4), "reference_cv": round(reference, 4),
            "reference_probe_s": round(reference_seconds, 1),
            "reference_share": round((reference_seconds + seconds["checkpoints"]) /
                                     (total - seconds["probe"] + reference_seconds), 3),
        }
        print(row, flush=True)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "probe.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# The probe's share of a trial (CPU)",
        "",
        f"Command: `.venv/bin/python benchmarks/probe.py --n {args.n} --epochs {args.epochs}` on {platform.machine()} "
        f"with {os.cpu_count()} cores, no GPU, Keras backend {keras.backend.backend()}. Fashion-MNIST, {len(problem.y)} "
        f"search rows, 5-fold CV, conv2d 32-64 filters, {args.epochs} epochs, intermediate scores on "
        "600 rows at 2 checkpoints, as in a search. `auto` resolved to "
        f"`{resolve_probe('auto')}` here. Share = (probe + checkpoints) / trial.",
        "",
        "| candidate | code width | trial (s) | fit (s) | checkpoints (s) | probe (s) | probe share | cheap CV acc "
        "| reference CV acc | difference (points) | reference probe (s) | share with reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| {r['candidate']} | {r['code_width']} | {r['trial_s']} | {s['fit']} | {s['checkpoints']} | {s['probe']} | "
            f"{100 * r['probe_share']:.0f}% | {r['cheap_cv']:.4f} | {r['reference_cv']:.4f} | "
            f"{100 * (r['cheap_cv'] - r['reference_cv']):+.2f} | {r['reference_probe_s']} | {100 * r['reference_share']:.0f}% |"
        )
    lines += ["", "GPU: not measured in this session (no GPU machine was lent); on an accelerator `auto` "
              "uses the device probe under Keras' JAX backend (encoderkit/device_probe.py) and the Keras "
              "softmax probe under the others (encoderkit/softmax_probe.py).", ""]
    (RESULTS / "probe.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
