"""Searched sequence encoders against the time series classification baselines, on the UCR/UEA
datasets bundled with aeon (their official train/test splits).

    .venv/bin/python benchmarks/sequences.py [--datasets GunPoint ArrowHead ...] [--minutes 7]
                                             [--seeds 0] [--workers 2] [--space series]

For each dataset: 1-NN with Euclidean distance and with (full-window) DTW (aeon), and a search
of `--space` for `--minutes` of wall time (then the export's refit and held-out scores), which
also scores raw values and MiniRocket features with the same reference probe. The search
chooses by cross-validation on the official training series only; the test series are scored
once, after it. Results accumulate in benchmarks/results/sequences.json (one entry per dataset
and seed, so a run can be split across invocations) and are rendered to sequences.md."""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "BasicMotions")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--minutes", type=float, default=7.0, help="search wall time per dataset and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--space", default="series")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    record = json.loads((RESULTS / "sequences.json").read_text()) if (RESULTS / "sequences.json").exists() else {}
    record.setdefault("neighbours", {})
    record.setdefault("searches", {})
    for name in args.datasets:
        if name not in record["neighbours"]:
            record["neighbours"][name] = nearest_neighbours(name)
            save(record)
        for seed in args.seeds:
            record["searches"][f"{name}/{seed}"] = searched(name, seed, args)
            save(record)
    print((RESULTS / "sequences.md").read_text())


def split(name):
    from encoderkit.data import load_dataset

    dataset = load_dataset(f"ucr:{name}")
    test = np.zeros(len(dataset.y), dtype=bool)
    test[dataset.test_rows] = True
    series = dataset.X.reshape(len(dataset.X), *dataset.shape).transpose(0, 2, 1)  # aeon: (n, channels, steps)
    return series[~test], dataset.y[~test], series[test], dataset.y[test]


def nearest_neighbours(name) -> dict:
    """1-NN test accuracy with each distance (the UCR archive's reference classifiers)."""
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    X_train, y_train, X_test, y_test = split(name)
    scores = {}
    for distance in ("euclidean", "dtw"):
        started = time.perf_counter()
        model = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance=distance).fit(X_train, y_train)
        scores[distance] = {"accuracy": float(np.mean(model.predict(X_test) == y_test)),
                            "seconds": round(time.perf_counter() - started, 1)}
    return {"train": list(X_train.shape), "test": int(len(X_test)), **scores}


def searched(name, seed, args) -> dict:
    import search
    from search.leaderboard import describe

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = search.run(f"ucr:{name}", space=args.space, trials=100_000, timeout=args.minutes * 60,
                            metric="accuracy", seed=seed, workers=args.workers, study_dir=Path(tmp) / "s",
                            progress=False, verbose=False)
        wall = time.perf_counter() - started
        export = json.loads((Path(tmp) / "s" / "export.json").read_text())
    finished = [t for t in result.trials if t.state == "complete"]
    return {
        "seed": seed, "space": args.space, "minutes": args.minutes, "workers": args.workers,
        "wall_minutes": round(wall / 60, 2), "trials": len(result.trials), "finished": len(finished),
        "cv": result.best_cv, "test": export["test"], "baselines_test": export["baselines_test"],
        "baselines_cv": {k: v["cv_mean"] for k, v in result.baselines.items()},
        "winner": f"{export['candidate']['family']}: {describe(export['candidate'])}",
        "machine": f"{platform.machine()} with {os.cpu_count()} cores, CPU only",
        "date": time.strftime("%Y-%m-%d"),
    }


def save(record):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sequences.json").write_text(json.dumps(record, indent=1))
    (RESULTS / "sequences.md").write_text(render(record))


def render(record) -> str:
    runs = record["searches"].values()
    machines = sorted({run["machine"] for run in runs}) or ["-"]
    by_minutes = {}
    for key, run in record["searches"].items():
        by_minutes.setdefault((run["minutes"], run["space"]), set()).add(key.split("/")[0])
    commands = "; ".join(f"`.venv/bin/python benchmarks/sequences.py --datasets {' '.join(sorted(names))} "
                         f"--minutes {minutes:g} --space {space}`" for (minutes, space), names in sorted(by_minutes.items()))
    lines = [
        "# Searched sequence encoders on UCR/UEA datasets (official splits), test accuracy x 100",
        "",
        f"Commands: {commands}; on "
        f"{', '.join(machines)}. Each search ran its space for `--minutes` of wall time with 2 workers, chose its "
        "winner by 5-fold CV accuracy on the official training series, then refit it and scored the "
        "test series once; the budget column gives the search minutes and the whole wall time (baselines, search, refit, "
        "held-out scores). Raw and MiniRocket are scored by the same reference probe (MinMaxScaler + "
        "logistic regression) on the same split; 1-NN from aeon (DTW with a full window, as the "
        "archive's table).",
        "",
        "| dataset | train x shape | 1-NN ED | 1-NN DTW | raw + probe | MiniRocket + probe | searched best [95% CI] "
        "| seeds | search / whole budget (wall min) | trials | winning configuration (first seed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gaps, beats = [], []
    for name, nn in record["neighbours"].items():
        seeds = [run for key, run in record["searches"].items() if key.split("/")[0] == name]
        if not seeds:
            continue
        mean = lambda key: float(np.mean([run["baselines_test"][key]["score"] for run in seeds]))  # noqa: E731
        best = float(np.mean([run["test"]["score"] for run in seeds]))
        low = float(np.mean([run["test"]["low"] for run in seeds]))
        high = float(np.mean([run["test"]["high"] for run in seeds]))
        minirocket = mean("minirocket") if "minirocket" in seeds[0]["baselines_test"] else float("nan")
        gaps.append(best - minirocket)
        beats.append(best >= nn["dtw"]["accuracy"])
        shape = " x ".join(map(str, nn["train"]))
        lines.append(
            f"| {name} | {shape} | {100 * nn['euclidean']['accuracy']:.1f} | {100 * nn['dtw']['accuracy']:.1f} | "
            f"{100 * mean('raw'):.1f} | {100 * minirocket:.1f} | **{100 * best:.1f}** [{100 * low:.1f}, {100 * high:.1f}] | "
            f"{len(seeds)} | {seeds[0]['minutes']:g} / {max(run['wall_minutes'] for run in seeds):.1f} | "
            f"{round(np.mean([run['trials'] for run in seeds]))} | {seeds[0]['winner']} |")
    lines += [
        "",
        f"Searched best at least 1-NN DTW on {sum(beats)} of {len(beats)} datasets. Mean gap to MiniRocket: "
        f"{100 * float(np.nanmean(gaps)):+.1f} points." if gaps else "No searches recorded yet.",
        "",
        "With several seeds, the searched column is the mean test accuracy over seeds and the interval the mean of "
        "each seed's 95% bootstrap interval over test series; trials counts the trials each search ran, in any state (mean over seeds).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
