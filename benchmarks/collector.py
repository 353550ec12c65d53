"""The per-trial garbage collection over many trials in one process.

    .venv/bin/python benchmarks/collector.py [--trials 80]

TensorFlow keeps the functions it traces for every `fit` (benchmarks/results/memory.md), so
the heap a full collection walks grows with each trial. The engine collects once per trial
and then freezes what survived (`gc.freeze`, search/objective.py `release_memory`). This runs
`--trials` tiny digits trials through `search.objective.evaluate` in one process per mode and
reports the CPU milliseconds of that per-trial release (process time, so a busy machine does
not inflate it): `every` = the engine's behaviour, `once` = freezing only after the first
trial. Writes benchmarks/results/collector.md (and collector.json)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CANDIDATE = {"family": "dense", "code_size": 8, "include_input": False, "scaling": "minmax",
             "training": {"epochs": 2, "batch_size": 64, "learning_rate": 1e-2, "optimizer": "adam", "patience": 5},
             "family_params": {"layers": [{"units": 16, "activation": "relu"}]}}


def one_mode(mode, trials):
    import gc

    import numpy as np
    from sklearn.datasets import load_digits

    import search.objective as objective
    from encoderkit.data import Dataset
    from search.problem import make_problem

    X, y = load_digits(return_X_y=True)
    problem = make_problem(Dataset("d", X[:600], y[:600], "image", (8, 8, 1)), folds=3, seed=0)
    if mode == "once":  # the heap frozen after the first trial only
        real_freeze, done = gc.freeze, []
        gc.freeze = lambda: done or (done.append(1), real_freeze())
    costs, release = [], objective.release_memory

    def timed_release():
        started = time.process_time()
        release()
        costs.append(time.process_time() - started)

    objective.release_memory = timed_release
    for seed in range(trials):
        objective.evaluate(problem, CANDIDATE, seed=seed)
    return {"mode": mode, "trials": trials, "trials_2_11_ms": round(1000 * float(np.mean(costs[1:11])), 1),
            "last_10_ms": round(1000 * float(np.mean(costs[-10:])), 1),
            "objects_the_collector_walks": len(gc.get_objects())}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--mode", choices=["once", "every"], help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    if args.mode:
        print(json.dumps(one_mode(args.mode, args.trials)))
        return
    rows = []
    for mode in ("every", "once"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--trials", str(args.trials)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = ["# The per-trial garbage collection over many trials in one process", "",
             f"Command: `.venv/bin/python benchmarks/collector.py --trials {args.trials}` on {platform.machine()} "
             f"with {os.cpu_count()} cores. CPU milliseconds of `release_memory` (clear Keras' session, one full "
             "collection, freeze the survivors) per tiny digits trial, one process per mode.", "",
             "| freeze | trials 2-11 (ms/trial) | last 10 trials (ms/trial) | objects the collector still walks |",
             "|---|---|---|---|"]
    for r in rows:
        label = "after every trial (the engine)" if r["mode"] == "every" else "after the first trial only"
        lines.append(f"| {label} | {r['trials_2_11_ms']} | {r['last_10_ms']} | {r['objects_the_collector_walks']} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "collector.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "collector.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "collector.md").read_text())


if __name__ == "__main__":
    main()
