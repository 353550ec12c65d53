"""The GPU benchmark of issue 14, one command of about 8 minutes on one H200:

    # here, once: fills .gpu/ (wheels, Fashion-MNIST, env.sh; see ../shared/gpu/README.md)
    bash ../shared/gpu/prepare.sh
    # there (device tool: carry [".gpu"], timeout_s 600):
    source .gpu/env.sh && python3 benchmarks/gpu.py --out $OUT

    # on a CPU, a tiny version of the same runs (a few minutes):
    .venv/bin/python benchmarks/gpu.py --smoke
    # the same in an environment like the GPU machine's (Python 3.12, no TensorFlow or Ray):
    bash benchmarks/gpu_rehearsal.sh

Three searches with the optuna backend under Keras' JAX backend, each in its own process
with its own (cold) JAX compilation cache:
1. full Fashion-MNIST (60k training images, the official 10k test images), `--full-space`
   (image-gpu: more epochs and wider codes, start points chosen on a validation split of the
   training images), `--full-workers` (4), `--full-timeout` seconds (300), to a finished
   export: test accuracy and wall time from start to export;
2. `fashion-mnist:n=10000 --space image`, 1 worker, `--small-timeout` seconds (60, or less
   so that the command ends by `--deadline`, 480 s);
3. the same with 4 workers sharing the GPU, same wall budget (a new study).
For each: finished trials per hour (finished trials over the span from the first trial's
start to the last one's end, as benchmarks/scaling.py), the mean seconds per stage from the
trials' cost records (the leaderboard's cost line), peak GPU memory (nvidia-smi, polled),
and the seconds after the last trial (baselines before, export after). Then the held-out
check: the exported encoder's codes scored by the reference probe on the GPU (scikit-learn's
Array API on torch, as the export did) and on the host CPU, on the same rows.

The small runs skip the export (the full run measures it, on six times the rows), so the
command fits: 300 s of full search, its start, tail and export, then the two small runs in
what is left of the deadline.
Measured on one H200 on 2026-11-30 (benchmarks/results/gpu.md) in two calls, as a session's
15 device minutes allow: `--skip w1 w4` (the full run and the check, 396 s), then
`--skip full check --small-timeout 100 --deadline 380` (301 s); `--render` joins their
gpu.json files into one report.
Writes OUT/gpu.md and OUT/gpu.json (OUT: benchmarks/results by default) after every run,
so a run cut short still leaves what it measured. `--smoke` runs the same code on a CPU with
a tiny budget and small data, with the device probe forced (`probe: device_softmax`), and
writes gpu-smoke.md instead."""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

# The child: one search through the Python API, timing the work before and after the trials.
CHILD = """
import json, sys, time
started = time.time()
import jax
from search import engine
marks, programs = {}, {}

def compiled(event, seconds, **kwargs):  # where compile time goes, by program (this process)
    if event.endswith("backend_compile_duration"):
        name = kwargs.get("fun_name", "?")
        count, total = programs.get(name, (0, 0.0))
        programs[name] = (count + 1, total + seconds)

jax.monitoring.register_event_duration_secs_listener(compiled)

def timed(name, fn):
    def wrapper(*args, **kwargs):
        begin = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name] = marks.get(name, 0.0) + time.time() - begin
    return wrapper

engine.score_baselines = timed("baselines_s", engine.score_baselines)
engine.refit_and_export = timed("export_s", engine.refit_and_export)  # the export inside run
result = engine.run(**json.loads(sys.argv[1]))
marks["child_wall_s"] = time.time() - started
top = sorted(programs.items(), key=lambda item: -item[1][1])[:10]
json.dump({"marks": marks, "test": result.test, "leaderboard": result.leaderboard,
           "compiles": [[name, count, round(total, 2)] for name, (count, total) in top],
           "compile_count": sum(count for count, _ in programs.values())}, open(sys.argv[2], "w"))
"""

# The held-out check: the same codes, reference probe on the GPU (Array API) and on the host.
CHECK = """
import json, os, sys, time
import encoderkit  # before scikit-learn: SciPy's array API switch
import numpy as np
from encoderkit import load_encoder
from encoderkit.array_api import DEVICE_ENV, reference_device
from encoderkit.probe import test_score
from search.problem import stratified_subsample
from search.study import open_study

study = open_study(sys.argv[1])
problem = study.problem()
encoder = load_encoder(study.export_dir)
rows = stratified_subsample(problem.y, int(sys.argv[2]), 0)
X_test, y_test = problem.test_part()
train, test = encoder.transform(problem.X[rows]), encoder.transform(X_test)
out = {"rows": int(len(rows)), "width": int(train.shape[1])}
for where in ("auto", "host"):
    os.environ[DEVICE_ENV] = where
    begin = time.time()
    score = test_score(train, problem.y[rows], test, y_test, problem.metric, n_boot=100)[0]
    out[where] = {"device": str(reference_device()), "score": score, "seconds": time.time() - begin}
json.dump(out, open(sys.argv[3], "w"))
"""


class PeakGpuMemory:
    """Polls nvidia-smi for the GPUs' memory in use; `peak_mib` is None without nvidia-smi."""

    def __init__(self, every=0.5):
        self.every, self.peak_mib, self._stop = every, None, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self.idle_mib = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _read(self):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return sum(int(v) for v in out.split())
        except (OSError, subprocess.SubprocessError, ValueError):
            return None

    def _poll(self):
        while not self._stop.wait(self.every):
            used = self._read()
            if used is not None:
                self.peak_mib = max(self.peak_mib or 0, used)


def search(name, settings, workdir, env):
    """Runs one search in a child process; returns its measurements."""
    import optuna

    from search.leaderboard import cost_summary, mean_stage_seconds, trial_rows

    study_dir = workdir / name
    settings = {**settings, "study_dir": str(study_dir), "progress": False}
    env = {**env, "SEARCH_JAX_CACHE": str(workdir / f"jax-cache-{name}")}  # each run starts cold
    marks_file = workdir / f"{name}.json"
    started = time.time()
    with PeakGpuMemory() as memory:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings), str(marks_file)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode != 0:  # recorded, and the next run goes on: the device time is spent either way
        print(f"{name}: search failed\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}", flush=True)
        return {"name": name, "workers": settings["workers"], "timeout_s": settings["timeout"],
                "data": settings["data"], "space": Path(settings["space"]).stem, "wall_s": round(wall, 1),
                "error": done.stderr.strip()[-1500:]}
    child = json.loads(marks_file.read_text())
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{study_dir / 'study.db'}")
    finished = [t for t in stored.get_trials(deepcopy=False) if t.datetime_complete is not None]
    first = min(t.datetime_start for t in finished).timestamp()
    last = max(t.datetime_complete for t in finished).timestamp()
    rows = trial_rows(stored)
    means = mean_stage_seconds([r.stages for r in rows if r.state == "complete"])
    states = {s: sum(r.state == s for r in rows) for s in ("complete", "pruned", "fail")}
    return {
        "name": name, "workers": settings["workers"], "timeout_s": settings["timeout"], "data": settings["data"],
        "space": Path(settings["space"]).stem, "finished": len(finished), **states, "span_s": round(last - first, 1),
        "trials_per_hour": round(3600 * len(finished) / max(last - first, 1e-9)),
        "stage_means_s": {k: round(v, 2) for k, v in means.items()}, "cost_line": cost_summary(rows),
        "probe": sorted({t.user_attrs.get("probe", "?") for t in finished if t.state.name == "COMPLETE"}),
        "wall_s": round(wall, 1), "before_trials_s": round(first - started, 1),
        "after_last_trial_s": round(started + wall - last, 1),
        "baselines_s": round(child["marks"].get("baselines_s", 0.0), 1),
        "export_s": round(child["marks"]["export_s"], 1) if "export_s" in child["marks"] else None,
        "test": child["test"], "peak_gpu_mib": memory.peak_mib, "idle_gpu_mib": memory.idle_mib,
        "compile_count": child["compile_count"], "top_compiles": child["compiles"], "leaderboard": child["leaderboard"],
    }


def held_out_check(study_dir, rows, workdir, env):
    out_file = workdir / "check.json"
    done = subprocess.run([sys.executable, "-c", CHECK, str(study_dir), str(rows), str(out_file)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads(out_file.read_text())


def smoke_space(workdir) -> str:
    """The image space with the device probe named, so that a CPU run exercises it, and 1-2
    epochs without its start point, so that trials finish within a smoke run's budget."""
    import yaml

    doc = yaml.safe_load((ROOT / "spaces" / "image.yaml").read_text())
    doc["probe"] = {**doc["probe"], "model": "device_softmax"}
    doc["training"]["epochs"] = {"int": [1, 2]}
    doc["code_size"] = {"int": [16, 512], "log": True}
    doc.pop("start", None)
    path = workdir / "image-device-probe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a tiny budget on small data (CPU)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where gpu.md goes")
    parser.add_argument("--small-timeout", type=float, default=None,
                        help="seconds, runs 1 and 2 (default 60, cut to fit --deadline; smoke 15)")
    parser.add_argument("--full-timeout", type=float, default=None, help="seconds, run 3 (default 300; smoke 15)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="the whole command's seconds (default 480; smoke: none); the small runs get what is left")
    parser.add_argument("--full-workers", type=int, default=4,
                        help="workers of the full search (default 4: one H200 gave 3x one worker's trials with 4)")
    parser.add_argument("--check-rows", type=int, default=None, help="training rows of the held-out check (default 5000)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["w1", "w4", "full", "check"])
    parser.add_argument("--space", default="image",
                        help="the space of the small runs: a shipped name or a YAML file (default image; smoke: its own)")
    parser.add_argument("--full-space", default="image-gpu",
                        help="the space of the full search (default image-gpu: more epochs, wider codes; smoke: "
                             "the small runs' own)")
    parser.add_argument("--xla-flags", default=None,
                        help="XLA_FLAGS for the searches (e.g. --xla_gpu_autotune_level=0), to measure what "
                             "compiling costs; recorded in the report")
    parser.add_argument("--render", nargs="+", metavar="JSON",
                        help="runs nothing: writes OUT/gpu.md from the gpu.json files of runs made in parts "
                             "(e.g. the full run and the small runs as two calls on the device)")
    args = parser.parse_args()
    if args.render:
        return render(args.render, Path(args.out), args.smoke)
    small = args.small_timeout or (15.0 if args.smoke else 60.0)
    full = args.full_timeout or (15.0 if args.smoke else 300.0)
    deadline = args.deadline or (None if args.smoke else 480.0)
    check_rows = args.check_rows or (500 if args.smoke else 5000)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if args.xla_flags:
        env["XLA_FLAGS"] = args.xla_flags
    space = smoke_space(workdir) if args.smoke else args.space
    full_space = space if args.smoke else args.full_space
    common = {"space": space, "backend": "optuna", "trials": 100000, "data_dir": os.environ.get("FASHION_MNIST_DIR"),
              "seed": 0}
    small_data = f"fashion-mnist:n={1000 if args.smoke else 10000}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"smoke": args.smoke, "machine": machine(), "command": invocation(), "results": [], "check": None,
              "notes": ([f"XLA_FLAGS={args.xla_flags}"] if args.xla_flags else [])
              + ([f"small runs' space {args.space}"] if args.space != "image" and not args.smoke else [])}
    began = time.time()
    # The full search first: its 5 minutes are fixed, the small runs share what is left.
    if "full" not in args.skip:
        settings = {**common, "space": full_space, "data": "fashion-mnist:n=2000" if args.smoke else "fashion-mnist",
                    "workers": args.full_workers, "timeout": full, "export": True}
        record(report, search("full", settings, workdir, env), out)
        if "check" not in args.skip and "error" not in report["results"][-1]:
            report["check"] = held_out_check(workdir / "full", check_rows, workdir, env)
            print(json.dumps(report["check"]), flush=True)
    for name, workers in (("w1", 1), ("w4", 4)):
        if name in args.skip:
            continue
        budget = small
        if deadline is not None:  # each small run costs about its budget plus a minute of start and tail
            runs_left = 1 + (name == "w1" and "w4" not in args.skip)
            budget = min(small, (deadline - (time.time() - began)) / runs_left - SMALL_OVERHEAD_S)
        if budget < 15:
            report["notes"].append(f"{name} skipped: {budget:.0f} s of the deadline left for it")
            continue
        settings = {**common, "data": small_data, "workers": workers, "timeout": round(budget), "export": False}
        record(report, search(name, settings, workdir, env), out)
    report["total_s"] = round(time.time() - began, 1)
    print(write(out, report, args.smoke).read_text())
    failed = [r["name"] for r in report["results"] if "error" in r] + (["check"] if (report["check"] or {}).get("error") else [])
    if failed:  # a one-shot device call should say so in its exit status, not only in the report
        print(f"gpu.py: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _data(result) -> str:
    """A run's data and space (reports from before the space was recorded searched `image`)."""
    return f"{result['data']}, {result.get('space', 'image')}"


def render(parts, out: Path, smoke: bool):
    """One report from the reports of several invocations (in the order given)."""
    reports = [json.loads(Path(part).read_text()) for part in parts]
    report = {**reports[0], "results": [r for rep in reports for r in rep["results"]],
              "check": next((rep["check"] for rep in reports if rep.get("check")), None),
              "notes": [n for rep in reports for n in rep.get("notes", [])],
              "total_s": round(sum(rep.get("total_s", 0.0) for rep in reports), 1), "parts": len(reports)}
    out.mkdir(parents=True, exist_ok=True)
    print(write(out, report, smoke).read_text())


SMALL_OVERHEAD_S = 45  # start-up, baselines and the last trial's end around a small run's budget


def record(report, result, out):
    print(json.dumps({k: v for k, v in result.items() if k != "leaderboard"}), flush=True)
    report["results"].append(result)
    write(out, report, report["smoke"])


def invocation() -> str:
    """This command as it was typed, near enough: under .gpu/env.sh (the GPU machine, or its
    rehearsal on a CPU) the interpreter is the image's python3, else the one that runs it."""
    under_env = ".gpu/site" in os.environ.get("PYTHONPATH", "")
    python = "source .gpu/env.sh && python3" if under_env else os.path.relpath(sys.executable)
    return " ".join([python, "benchmarks/gpu.py", *map(shlex.quote, sys.argv[1:])])


def machine() -> dict:
    info = {"platform": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    return info


def write(out: Path, report: dict, smoke: bool) -> Path:
    """Writes OUT/gpu.json and OUT/gpu.md (gpu-smoke.* for a smoke run); returns the .md."""
    stem = "gpu-smoke" if smoke else "gpu"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    m = report["machine"]
    command = report.get("command") if report.get("parts", 1) == 1 else None  # parts: their notes say how
    command = command or ('.venv/bin/python benchmarks/gpu.py --smoke' if smoke
                          else 'source .gpu/env.sh && python3 benchmarks/gpu.py')
    lines = [
        "# The GPU benchmark (issue 14)" + (": smoke run on a CPU, tiny budget, not a measurement" if smoke else ""),
        "",
        f"Command: `{command}`"
        f" on {m['gpu'] or 'no GPU'} ({m['cores']} cores, Python {m['python']}), Keras backend jax, optuna backend, "
        "the space after each run's data" + (" (image with `probe: device_softmax`, 1-2 epochs, codes up to 512)" if smoke else "")
        + ". Trials/hour: finished "
        "trials over the span from the first trial's start to the last one's end. After the last trial: export "
        "(refit on the whole search part, held-out scores) and process exit. Stage means: seconds per completed trial.",
        "",
        "| run | data | workers | budget (s) | finished (complete/pruned/failed) | trials/hour | probe | "
        "stage means (s) | peak GPU MiB | before first trial (s) | after last trial (s) | export (s) | wall (s) | "
        "test accuracy [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {_data(r)} | {r['workers']} | {r['timeout_s']:.0f} | failed after "
                         f"{r['wall_s']} s: see below |" + " |" * 9)
            continue
        stages = ", ".join(f"{k} {v}" for k, v in r["stage_means_s"].items())
        test = r["test"]
        lines.append(
            f"| {r['name']} | {_data(r)} | {r['workers']} | {r['timeout_s']:.0f} | {r['finished']} "
            f"({r['complete']}/{r['pruned']}/{r['fail']}) | {r['trials_per_hour']} | {', '.join(r['probe'])} | {stages} | "
            f"{r['peak_gpu_mib'] if r['peak_gpu_mib'] is not None else 'n/a'} | {r['before_trials_s']} | "
            f"{r['after_last_trial_s']} | {r['export_s'] if r['export_s'] is not None else 'skipped'} | {r['wall_s']} | "
            + (f"{test['score']:.4f} [{test['low']:.4f}, {test['high']:.4f}] |" if test else "- |")
        )
    lines.append("")
    for r in report["results"]:
        if "error" in r:
            lines += [f"**{r['name']}** failed: `{r['error'][-600:]}`", ""]
            continue
        top = ", ".join(f"{name} {count}x {total} s" for name, count, total in r["top_compiles"][:6])
        lines += [f"**{r['name']}**: {r['cost_line']}. The main process compiled {r['compile_count']} programs; "
                  f"most seconds: {top}.", ""]
    check = report.get("check")
    if check and "error" not in check:
        auto, host = check["auto"], check["host"]
        where = "the host (no GPU for torch here)" if auto["device"] == "None" else f"torch {auto['device']}"
        lines += [
            f"Held-out check on the full run's exported encoder ({check['rows']} training rows, {check['width']} "
            f"features, the official test images): reference probe on {where} "
            f"{auto['score']:.4f} in {auto['seconds']:.1f} s, on the host CPU {host['score']:.4f} in "
            f"{host['seconds']:.1f} s: difference {100 * (auto['score'] - host['score']):+.2f} points.", ""]
    elif check:
        lines += [f"Held-out check failed: `{check['error'][-300:]}`", ""]
    lines += [f"Note: {note}" for note in report.get("notes", [])]
    if "total_s" in report:
        lines += [f"{'Whole command' if report.get('parts', 1) == 1 else 'Commands in all'}: {report['total_s']} s.", ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    return out / f"{stem}.md"


if __name__ == "__main__":
    sys.exit(main())
