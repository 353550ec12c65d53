"""Which image-space settings does the reference probe read best on full Fashion-MNIST?
Chosen on a validation split of the 60k training images only (50k fit / 10k validation,
stratified, seed 0); the official test images are not read. Each configuration is a conv2d
autoencoder (one pooled 3x3 ReLU convolution, ReLU code plus the inputs, Adam 1e-3, batch 128)
fitted with encoderkit's AutoencoderTransformer, then the reference probe (MinMaxScaler +
LogisticRegression) fitted on the 50k codes and scored on the 10k.

    .venv/bin/python benchmarks/image_validation.py start wide4096 f64 start10

Appends one JSON line per configuration to benchmarks/results/image_validation.jsonl and
rewrites image_validation.md from all lines. On 2 CPU cores one configuration takes 15-35
minutes (the 60k fit and the probe on 50k wide codes). It chose spaces/image-gpu.yaml's
start points."""

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
RESULTS = ROOT / "benchmarks" / "results"

CONFIGS = {
    "start": dict(code_size=2048, filters=32, epochs=5),  # the image space's start point
    "wide4096": dict(code_size=4096, filters=32, epochs=5),
    "f64": dict(code_size=2048, filters=64, epochs=5),
    "start10": dict(code_size=2048, filters=32, epochs=10),
    "wide4096-f64-e10": dict(code_size=4096, filters=64, epochs=10),  # image-gpu's first start point
}


def measure(name: str) -> dict:
    from sklearn.model_selection import train_test_split

    from encoderkit.data import load_dataset
    from encoderkit.probe import make_probe
    from encoderkit.transformer import AutoencoderTransformer

    config = CONFIGS[name]
    data = load_dataset("fashion-mnist")
    X, y = data.X[: data.test_rows[0]], data.y[: data.test_rows[0]]  # the training images only
    fit_rows, val_rows = train_test_split(np.arange(len(y)), test_size=1 / 6, stratify=y, random_state=0)
    started = time.time()
    encoder = AutoencoderTransformer(
        family="conv2d", code_size=config["code_size"], input_shape=(28, 28, 1), include_input=True,
        family_params={"layers": [{"filters": config["filters"], "kernel_size": 3, "activation": "relu", "pool": True}],
                       "code_activation": "relu", "batch_norm": False, "dropout": 0.0},
        epochs=config["epochs"], batch_size=128, learning_rate=1e-3, optimizer="adam", patience=4, random_state=0,
    ).fit(X[fit_rows])
    fit_s = time.time() - started
    started = time.time()
    probe = make_probe().fit(encoder.transform(X[fit_rows]), y[fit_rows])
    accuracy = float(np.mean(probe.predict(encoder.transform(X[val_rows])) == y[val_rows]))
    return {"name": name, "rows": len(y), "config": config, "val_acc": round(accuracy, 4), "fit_s": round(fit_s, 1),
            "probe_s": round(time.time() - started, 1)}


def write_report(lines: list[dict]) -> Path:
    rows = "\n".join(
        f"| {r['name']} | {r['config']['code_size']} | {r['config']['filters']} | {r['config']['epochs']} | "
        f"{r['val_acc']:.4f} | {r['fit_s']} | {r['probe_s']} |" for r in lines)
    missing = [name for name in CONFIGS if name not in {r["name"] for r in lines}]
    path = RESULTS / "image_validation.md"
    path.write_text(
        "# Image settings on a validation split of Fashion-MNIST's training images\n\n"
        "Command: `.venv/bin/python benchmarks/image_validation.py NAME...` on 2 CPU cores (TensorFlow). "
        "50k training images fit the autoencoder and the reference probe; 10k held-out training images score it; "
        "the official test images are not read. conv2d, one pooled 3x3 ReLU convolution, ReLU code plus the inputs, "
        "Adam 1e-3, batch 128, seed 0.\n\n"
        "| name | code | filters | epochs | validation accuracy | fit (s) | probe (s) |\n"
        "|---|---|---|---|---|---|---|\n" + rows + "\n"
        + (f"\nNot measured yet: {', '.join(missing)}.\n" if missing else "")
        + "\nSeconds are upper bounds where runs shared the 2 cores with other work (2026-12-01, main at 8645a28).\n")
    return path


def main():
    log = RESULTS / "image_validation.jsonl"
    for name in sys.argv[1:] or list(CONFIGS):
        result = measure(name)
        print(json.dumps(result), flush=True)
        with open(log, "a") as out:
            out.write(json.dumps(result) + "\n")
    print(write_report([json.loads(line) for line in log.read_text().splitlines() if line.strip()]).read_text())


if __name__ == "__main__":
    main()
