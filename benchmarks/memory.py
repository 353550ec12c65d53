"""Resident memory of one search worker over many trials: does anything leak between trials?

    .venv/bin/python benchmarks/memory.py [--trials 50] [--fresh-process]

Runs `python -m search run` on digits with small dense models (tests/data/tiny.yaml) in one
worker, polls the study's storage for the number of finished trials and samples the worker's
resident set size (/proc/PID/status VmRSS) as each trial finishes. Writes
benchmarks/results/memory.md with the RSS at trials 10 and 50 and the growth between them."""

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def finished(db):
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("select count(*) from trials where state in ('COMPLETE','PRUNED','FAIL')").fetchone()[0]
    except sqlite3.Error:
        return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--fresh-process", action="store_true")
    args = parser.parse_args()
    study = Path(tempfile.mkdtemp()) / "study"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    cmd = [sys.executable, "-m", "search", "run", "--space", str(ROOT / "tests/data/tiny.yaml"),
           "--trials", str(args.trials), "--study-dir", str(study), "--no-progress",
           *(["--fresh-process"] if args.fresh_process else [])]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, seen = {}, 0
    while proc.poll() is None:
        count = finished(study / "study.db")
        if count > seen:
            seen = count
            samples[count] = rss_mib(proc.pid)
            print(f"trial {count}: {samples[count]:.0f} MiB", flush=True)
        time.sleep(0.2)
    if proc.returncode != 0:
        sys.exit(f"search failed: {proc.stderr.read()[-2000:]}")
    wall = time.time() - started
    at = lambda n: samples[min((k for k in samples if k >= n), default=max(samples))]
    early, late = at(10), at(args.trials)
    growth = 100 * (late - early) / early
    RESULTS.mkdir(exist_ok=True)
    mode = "each trial in a fresh process" if args.fresh_process else "all trials in the worker process"
    text = "\n".join([
        "# Resident memory over trials (one worker)",
        "",
        f"Command: `.venv/bin/python benchmarks/memory.py --trials {args.trials}"
        f"{' --fresh-process' if args.fresh_process else ''}` on {platform.machine()} with {os.cpu_count()} cores, "
        f"CPU only; {mode}; digits, tests/data/tiny.yaml (small dense models); {wall:.0f} s.",
        "",
        "| finished trials | worker RSS (MiB) |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in sorted(samples.items()) if k in (1, 5, 10, 20, 30, 40, 50) or k == max(samples)),
        "",
        f"Growth from trial 10 to trial {args.trials}: {late - early:+.0f} MiB ({growth:+.1f}%); target: at most +10%.",
        "",
    ])
    (RESULTS / "memory.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
