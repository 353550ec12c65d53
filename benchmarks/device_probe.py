"""The device probe (`device_softmax`: all folds in one compiled JAX program) against the
reference probe on the same codes and the same folds, on this machine's CPU.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/device_probe.py [--n 10000]

Features: digits' pixels; Fashion-MNIST (a stratified n of the training images, the search
part a search would see): raw pixels, a dense autoencoder's 128-unit code, and the image
space's start point (one pooled 32-filter convolution, a 2048-unit ReLU code, inputs passed
through: 2832 features) after 2 epochs. For each: the reference (MinMaxScaler +
LogisticRegression, lbfgs, max_iter 1000) and the device probe by 5-fold CV, their mean
accuracy and seconds; for the device probe also its compile seconds and a second, compiled
call. Writes benchmarks/results/device_probe.md (and .json)."""

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


def features(n):
    from sklearn.datasets import load_digits

    from encoderkit.data import load_dataset
    from encoderkit.transformer import AutoencoderTransformer
    from search.problem import make_problem

    yield "digits pixels", *load_digits(return_X_y=True)
    problem = make_problem(load_dataset(f"fashion-mnist:n={n}"), folds=5)
    X, y = problem.trial_X, problem.trial_y
    yield "fashion-mnist pixels", X, y
    dense = AutoencoderTransformer(family="dense", code_size=128, family_params={"layers": [{"units": 512, "activation": "relu"}]},
                                   epochs=5, batch_size=128, input_shape=(28, 28, 1), random_state=0)
    yield "fashion-mnist dense code 128", dense.fit_transform(X), y
    layers = [{"filters": 32, "kernel_size": 3, "activation": "relu", "pool": True}]
    conv = AutoencoderTransformer(family="conv2d", code_size=2048, include_input=True, epochs=2, batch_size=128,
                                  family_params={"layers": layers, "code_activation": "relu"},
                                  input_shape=(28, 28, 1), random_state=0)
    yield "fashion-mnist conv2d code 2048 + inputs", conv.fit_transform(X), y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax

    from encoderkit.probe import cv_score
    from search import compile_cache
    from search.quiet import import_keras_quietly

    keras = import_keras_quietly()
    os.environ.setdefault(compile_cache.CACHE_ENV, "off")  # every program compiled here, cold
    clock = compile_cache.enable()
    rows = []
    for name, X, y in features(args.n):
        started = time.perf_counter()
        reference, _ = cv_score(X, y, "accuracy", 5, 0, "logistic_regression")
        reference_s = time.perf_counter() - started
        timings = []
        for _ in range(2):  # the first call compiles (once per shape bucket), the second does not
            compiled, started = compile_cache.seconds(), time.perf_counter()
            device, _ = cv_score(X, y, "accuracy", 5, 0, "device_softmax")
            timings.append((time.perf_counter() - started, compile_cache.seconds() - compiled))
        row = {"features": name, "rows": len(y), "width": X.shape[1], "reference": round(reference, 4),
               "reference_s": round(reference_s, 1), "device": round(device, 4),
               "difference_points": round(100 * (device - reference), 2), "device_first_s": round(timings[0][0], 1),
               "device_compile_s": round(timings[0][1], 1) if clock else None, "device_s": round(timings[1][0], 1)}
        print(row, flush=True)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_probe.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# The device probe against the reference probe (CPU)",
        "",
        f"Command: `KERAS_BACKEND={keras.backend.backend()} .venv/bin/python benchmarks/device_probe.py --n {args.n}` "
        f"on {platform.machine()} with {os.cpu_count()} cores (shared), JAX {jax.__version__} on "
        f"{jax.devices()[0].platform}. 5-fold stratified CV (seed 0), the same folds for both probes; accuracy. "
        "Reference: MinMaxScaler + LogisticRegression (lbfgs, max_iter 1000), folds one after another, BLAS on one "
        "thread. Device: `device_softmax`, every fold in one jitted program; first call with its compilation, "
        "then a second call of the compiled program.",
        "",
        "| features | rows | width | reference acc | device acc | difference (points) | reference (s) | "
        "device, first call (s) | of which compiling (s) | device, compiled (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['features']} | {r['rows']} | {r['width']} | {r['reference']:.4f} | {r['device']:.4f} | "
                     f"{r['difference_points']:+.2f} | {r['reference_s']} | {r['device_first_s']} | "
                     f"{r['device_compile_s'] if r['device_compile_s'] is not None else 'n/a'} | {r['device_s']} |")
    lines += ["", "On a CPU `probe: auto` stays `fast_logistic`; `device_softmax` is what `auto` runs on a GPU under "
              "Keras' JAX backend. GPU timings: benchmarks/results/gpu.md.", ""]
    (RESULTS / "device_probe.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
