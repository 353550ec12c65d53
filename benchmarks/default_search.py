"""The default search on digits, timed, with the winner's held-out score beside raw pixels'.

    .venv/bin/python benchmarks/default_search.py [--trials 30] [--seed 0]

Writes benchmarks/results/default_search.md (appends one row per run)."""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "default_search.md"
HEADER = (
    "| date | machine | seed | trials | wall s | best CV acc | test acc [95% CI] | raw test acc [95% CI] | winner |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import search
    from search.leaderboard import describe

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = search.run("digits", trials=args.trials, seed=args.seed, study_dir=Path(tmp) / "s", progress=False)
        wall = time.perf_counter() - started
        import json

        export = json.loads((Path(tmp) / "s" / "export.json").read_text())
    test, raw = export["test"], export["baselines_test"]["raw"]
    machine = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    row = (
        f"| {time.strftime('%Y-%m-%d')} | {machine} | {args.seed} | {args.trials} | {wall:.0f} | "
        f"{result.best_cv:.4f} | {test['score']:.4f} [{test['low']:.4f}, {test['high']:.4f}] | "
        f"{raw['score']:.4f} [{raw['low']:.4f}, {raw['high']:.4f}] | {export['candidate']['family']}: "
        f"{describe(export['candidate'])} |\n"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Default search on digits (search part 1347 rows, test part 450 rows)\n\n"
                           "Command: `.venv/bin/python benchmarks/default_search.py --trials N --seed S`\n\n" + HEADER)
    with RESULTS.open("a") as handle:
        handle.write(row)
    print(row)


if __name__ == "__main__":
    main()
