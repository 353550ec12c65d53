"""What the reference probe gains from more training rows on Fashion-MNIST: the reason
`--subsample` trains trials on fewer rows and refits the winner on all of them.

    .venv/bin/python benchmarks/probe_rows.py [--rows 10000 20000] [--validation 10000] [--epochs 5]

Only Fashion-MNIST's 60k training images are used (the official test images never): a
stratified validation split of `--validation` images, and nested stratified fit sets of each
`--rows` size from the rest. Features: the raw pixels, and the codes of one conv2d autoencoder
(spaces/image.yaml's start point with a 512-unit code), trained once on the smallest fit set
as a trial under `--subsample` would be. For each feature set and row count the reference
probe (MinMaxScaler + LogisticRegression, 1000 lbfgs iterations) is fit on the rows and scored
on the validation split, with a 95% bootstrap interval. Writes benchmarks/results/probe_rows.md
(and probe_rows.json)."""

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

CANDIDATE = {  # spaces/image.yaml's start point, with a 512-unit code and no inputs beside it
    "family": "conv2d", "code_size": 512, "include_input": False, "scaling": "minmax",
    "training": {"epochs": 5, "batch_size": 128, "learning_rate": 1e-3, "optimizer": "adam", "patience": 4},
    "family_params": {"layers": [{"filters": 32, "kernel_size": 3, "activation": "relu", "pool": True}],
                      "code_activation": "relu", "batch_norm": False, "dropout": 0.0},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--validation", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from search.quiet import import_keras_quietly

    keras = import_keras_quietly()
    import numpy as np
    from sklearn.model_selection import train_test_split

    from encoderkit.data import load_dataset
    from encoderkit.probe import REFERENCE, test_score
    from encoderkit.transformer import AutoencoderTransformer
    from search.suggest import transformer_params

    started = time.time()
    data = load_dataset("fashion-mnist")
    train = np.setdiff1d(np.arange(len(data.y)), data.test_rows)  # the training images only
    rest, validation = train_test_split(train, test_size=args.validation, stratify=data.y[train],
                                        random_state=args.seed)
    rows = sorted(args.rows)
    pool, _ = train_test_split(rest, train_size=rows[-1], stratify=data.y[rest], random_state=args.seed)
    # Nested fit sets: the smaller ones are stratified subsets of the larger.
    fit_sets = {rows[-1]: pool}
    for size in reversed(rows[:-1]):
        bigger = fit_sets[min(s for s in fit_sets if s > size)]
        fit_sets[size], _ = train_test_split(bigger, train_size=size, stratify=data.y[bigger],
                                             random_state=args.seed)
    X, y = data.X, data.y
    candidate = {**CANDIDATE, "training": {**CANDIDATE["training"], "epochs": args.epochs}}
    tick = time.perf_counter()
    encoder = AutoencoderTransformer(**transformer_params(candidate, args.seed, data.shape)).fit(X[fit_sets[rows[0]]])
    train_seconds = time.perf_counter() - tick
    features = {
        "raw pixels": lambda index: X[index],
        f"conv2d code {CANDIDATE['code_size']} (trained on {rows[0]} rows)": lambda index: encoder.transform(X[index]),
    }
    results = []
    for name, transform in features.items():
        validation_features = transform(validation)
        for size in rows:
            tick = time.perf_counter()
            score, low, high = test_score(transform(fit_sets[size]), y[fit_sets[size]], validation_features,
                                          y[validation], "accuracy", seed=args.seed, probe=REFERENCE)
            row = {"features": name, "rows": size, "accuracy": round(score, 4), "low": round(low, 4),
                   "high": round(high, 4), "probe_s": round(time.perf_counter() - tick, 1)}
            print(row, flush=True)
            results.append(row)
    RESULTS.mkdir(exist_ok=True)
    record = {"results": results, "validation": args.validation, "epochs": args.epochs, "seed": args.seed,
              "autoencoder_train_s": round(train_seconds, 1), "wall_s": round(time.time() - started, 1)}
    (RESULTS / "probe_rows.json").write_text(json.dumps(record, indent=1))
    text = write(record, args, keras.backend.backend())
    (RESULTS / "probe_rows.md").write_text(text)
    print(text)


def write(record, args, backend):
    command = (f".venv/bin/python benchmarks/probe_rows.py --rows {' '.join(map(str, sorted(args.rows)))} "
               f"--validation {args.validation} --epochs {args.epochs}")
    lines = [
        "# The reference probe with more training rows (Fashion-MNIST)",
        "",
        f"Command: `{command}` on {platform.machine()} with {os.cpu_count()} cores, CPU only, Keras backend "
        f"{backend}; {record['wall_s']:.0f} s in all (autoencoder training {record['autoencoder_train_s']:.0f} s). "
        f"Only the 60k training images: a stratified validation split of {args.validation}, nested stratified "
        "fit sets from the rest. The reference probe (MinMaxScaler + LogisticRegression, 1000 lbfgs iterations) "
        "fit on each set, accuracy on the validation split with a 95% bootstrap interval. The autoencoder "
        "(spaces/image.yaml's start point, conv2d 32 filters pooled, 512-unit ReLU code, "
        f"{args.epochs} epochs) is trained once, on the smallest fit set.",
        "",
        "| features | fit rows | validation accuracy | 95% interval | probe fit (s) |",
        "|---|---|---|---|---|",
    ]
    for r in record["results"]:
        lines.append(f"| {r['features']} | {r['rows']} | {100 * r['accuracy']:.2f} | "
                     f"[{100 * r['low']:.2f}, {100 * r['high']:.2f}] | {r['probe_s']} |")
    lines.append("")
    by_features = {}
    for r in record["results"]:
        by_features.setdefault(r["features"], []).append(r)
    lines += [f"- {name}: {100 * (rows[-1]['accuracy'] - rows[0]['accuracy']):+.2f} points from {rows[0]['rows']} "
              f"to {rows[-1]['rows']} fit rows." for name, rows in by_features.items()]
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()
