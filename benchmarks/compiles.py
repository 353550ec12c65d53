"""What one model compiles under Keras' JAX backend: for each of a few image-space models, one
`fit` (2 epochs) and one `transform` in a fresh process with no compilation cache, and the
programs JAX compiled there, by name, with their count and seconds.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/compiles.py [--rows 2000] [--label TEXT]
    source .gpu/env.sh && python3 benchmarks/compiles.py --out $OUT --label h200   # GPU machine

The images are random (28 x 28 x 1), so no dataset is needed: the programs depend on shapes
only. Writes compiles.md (a section per run, appended) and compiles.json to --out
(default benchmarks/results)."""

from __future__ import annotations

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
MODELS = {  # the image space's start point, and one of each other family kind it searches
    "conv2d": ("conv2d", {"layers": [{"filters": 32, "kernel_size": 3, "activation": "relu", "pool": True}],
                          "code_activation": "relu"}, 2048, 128),
    "conv1d": ("conv1d", {"layers": [{"filters": 23, "kernel_size": 5, "activation": "elu", "pool": True},
                                     {"filters": 45, "kernel_size": 5, "activation": "relu", "pool": True}],
                          "batch_norm": True, "dropout": 0.1}, 1205, 64),
    "seq2seq": ("seq2seq", {"layers": [{"units": 64, "activation": "tanh"}], "cell": "lstm"}, 653, 128),
    "dense": ("dense", {"layers": [{"units": 512, "activation": "relu"}]}, 128, 256),
}


def one(name: str, rows: int) -> dict:
    """Runs in the child: fits and transforms one model, counting JAX's compilations."""
    import jax
    import numpy as np

    from encoderkit.transformer import AutoencoderTransformer
    from search.compile_cache import programs_by_name

    compiled = programs_by_name()

    family, params, code_size, batch_size = MODELS[name]
    X = np.random.default_rng(0).random((rows, 28 * 28), dtype=np.float32)
    started = time.perf_counter()
    model = AutoencoderTransformer(family=family, family_params=params, code_size=code_size, epochs=2,
                                   batch_size=batch_size, input_shape=(28, 28, 1), random_state=0)
    model.fit(X).transform(X)
    seconds = time.perf_counter() - started
    return {"model": name, "seconds": round(seconds, 2), "device": str(jax.devices()[0]),
            "programs": sum(n for n, _ in compiled.values()),
            "compile_seconds": round(sum(s for _, s in compiled.values()), 2),
            "by_name": {k: [n, round(s, 3)] for k, (n, s) in sorted(compiled.items(), key=lambda kv: -kv[1][1])}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--label", default="", help="what this run measures (a commit, a flag)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where compiles.md and compiles.json go")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.rows)))
        return
    env = {**os.environ, "KERAS_BACKEND": "jax", "SEARCH_JAX_CACHE": "off", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = []
    for name in MODELS:
        done = subprocess.run([sys.executable, __file__, "--one", name, "--rows", str(args.rows)],
                              capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        runs.append(json.loads(lines[-1][7:]) if lines else {"model": name, "failed": done.stderr[-500:]})
        print(runs[-1] if "failed" in runs[-1] else
              f"{name}: {runs[-1]['programs']} programs, {runs[-1]['compile_seconds']} s compiling of {runs[-1]['seconds']} s")
    write(runs, args)


def write(runs, args):
    import jax

    when = time.strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform}"
    lines = [f"\n## {when}, {machine}{', ' + args.label if args.label else ''}\n",
             f"`benchmarks/compiles.py --rows {args.rows}`: one fit (2 epochs) and transform per model, "
             "a fresh process each, no compilation cache.\n",
             "| model | programs | compiling s | fit + transform s | largest programs (count, s) |",
             "|---|---|---|---|---|"]
    for run in runs:
        if "failed" in run:
            lines.append(f"| {run['model']} | failed | | | {run['failed'].splitlines()[-1] if run['failed'] else ''} |")
            continue
        top = ", ".join(f"{name} ({n}, {s:.2f})" for name, (n, s) in list(run["by_name"].items())[:4])
        lines.append(f"| {run['model']} | {run['programs']} | {run['compile_seconds']:.2f} | {run['seconds']:.2f} | {top} |")
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "compiles.md"
    if not report.exists():
        report.write_text("# What one model compiles under Keras' JAX backend\n")
    with report.open("a") as out:
        out.write("\n".join(lines) + "\n")
    history = args.out / "compiles.json"
    previous = json.loads(history.read_text()) if history.exists() else []
    history.write_text(json.dumps([*previous, {"when": when, "machine": machine, "label": args.label,
                                               "rows": args.rows, "runs": runs}], indent=1) + "\n")
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
