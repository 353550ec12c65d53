"""Trials per hour with 1 and 2 workers, for the Optuna and Ray backends, and for Optuna with
its trials in a PostgreSQL database (a throwaway local server, as in the tests) against the
study's own SQLite file.

    .venv/bin/python benchmarks/scaling.py [--trials 16] [--backends optuna ray postgres]

Runs `python -m search run` on digits with small dense models (tests/data/tiny.yaml), each
worker's TensorFlow thread pools capped at cores/workers (Optuna: per worker process; Ray:
`--cpus-per-trial`). Throughput is measured from the study's storage: finished trials over
the span from the first trial's start to the last trial's end, so start-up, baselines and the
export are not counted. Writes benchmarks/results/scaling.md (and scaling.json)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def measure(backend, workers, trials, storage=None):
    """`backend` "postgres" is the optuna backend with `--storage` = the server's URL."""
    import optuna

    study = Path(tempfile.mkdtemp()) / "study"
    cores = max(1, (os.cpu_count() or 1) // workers)
    extra = ["--cpus-per-trial", str(cores)] if backend == "ray" else []
    extra += ["--storage", storage] if backend == "postgres" else []
    cmd = [sys.executable, "-m", "search", "run", "--backend", "optuna" if backend == "postgres" else backend,
           "--workers", str(workers), *extra,
           "--space", str(ROOT / "tests/data/tiny.yaml"), "--trials", str(trials), "--study-dir", str(study),
           "--no-progress", "--seed", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    started = time.time()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.time() - started
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if backend == "postgres":
        stored = optuna.load_study(study_name="study", storage=storage.replace("postgresql:", "postgresql+psycopg:")).trials
    else:
        stored = optuna.load_study(study_name="search", storage=f"sqlite:///{study / 'study.db'}").trials
    stored = [t for t in stored if not t.user_attrs.get("surplus")]
    done = [t for t in stored if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"backend": backend, "workers": workers, "trials": len(done), "span_s": round(span, 1),
            "wall_s": round(wall, 1), "trials_per_hour": round(3600 * len(done) / span)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--backends", nargs="+", default=["optuna", "ray", "postgres"])
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        for workers in (1, 2):
            if backend == "postgres":
                sys.path.insert(0, str(ROOT))
                from tests.postgres_server import throwaway_postgres

                with throwaway_postgres() as (url, _):
                    row = measure(backend, workers, args.trials, url)
            else:
                row = measure(backend, workers, args.trials)
            print(row, flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# Trials per hour, 1 and 2 workers",
        "",
        f"Command: `.venv/bin/python benchmarks/scaling.py --trials {args.trials} --backends {' '.join(args.backends)}` "
        f"on {platform.machine()} with "
        f"{os.cpu_count()} cores, CPU only. Digits, tests/data/tiny.yaml (small dense models), seed 1; "
        "TensorFlow pools capped at cores/workers per worker. Throughput = finished trials over the span "
        "from the first trial's start to the last trial's end (start-up, baselines and export excluded). "
        "`postgres`: the optuna backend with `--storage` on a local throwaway PostgreSQL 15 server "
        "(tests/postgres_server.py); compare it with `optuna`, whose trials are in the study's SQLite file.",
        "",
        "| backend | workers | trials | span (s) | whole run (s) | trials/hour | vs 1 worker |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        one = next(r for r in rows if r["backend"] == row["backend"] and r["workers"] == 1)
        lines.append(f"| {row['backend']} | {row['workers']} | {row['trials']} | {row['span_s']} | {row['wall_s']} | "
                     f"{row['trials_per_hour']} | {row['trials_per_hour'] / one['trials_per_hour']:.2f}x |")
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
