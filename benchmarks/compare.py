"""This engine against what people do today, on the same space and wall-clock budget.

    .venv/bin/python benchmarks/compare.py [--datasets digits insurance fashion-mnist]
        [--minutes 3] [--seeds 1] [--space default]

Per dataset and seed, four searches over the same space, each given the same wall-clock budget:
  (a) engine        this engine: TPE on the probe's CV score, median pruning, cheap probe
  (b) kt-recon      keras-tuner RandomSearch minimising validation reconstruction loss
  (c) optuna-recon  Optuna TPE minimising validation reconstruction loss
  (d) random-probe  random search on the probe's CV score (the kerastuner backend, random)
Each winner is refit on the whole search part with its seed and scored once on the held-out
test part by the reference probe (logistic regression), with a 95% bootstrap interval; the
table gives the mean over seeds. The engine's overhead is its search span over a bare loop
that fits, encodes and probes the same configurations (pruned ones for the epochs they ran).
Writes benchmarks/results/compare.md (and compare.json)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("engine", "kt-recon", "optuna-recon", "random-probe")


def reconstruction_loss(problem, candidate, seed):
    """What a tuner minimises without a probe: the best validation reconstruction loss."""
    from encoderkit.transformer import AutoencoderTransformer
    from search.suggest import transformer_params

    fitted = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape)).fit(problem.X)
    losses = fitted.history_.get("val_loss") or fitted.history_["loss"]
    value = float(np.min(losses))
    return value if np.isfinite(value) else float("inf")


def held_out(problem, candidate, seed):
    from encoderkit.transformer import AutoencoderTransformer
    from search.refit import held_out_score
    from search.suggest import transformer_params

    fitted = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape)).fit(problem.X)
    X_test, y_test = problem.test_part()
    return held_out_score(problem, fitted, X_test, y_test)


def run_engine(data, space, seconds, seed, backend="optuna", algorithm="random"):
    from search import engine

    study = Path(tempfile.mkdtemp()) / "study"
    kwargs = {"algorithm": algorithm} if backend == "kerastuner" else {}
    result = engine.run(data, space=space, trials=10**6, timeout=seconds, seed=seed, backend=backend,
                        study_dir=study, progress=False, **kwargs)
    return result, study


def run_optuna_recon(problem, space, seconds, seed):
    import optuna

    from search.suggest import OptunaSuggest, sample

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial):
        candidate = sample(space, OptunaSuggest(trial))
        trial.set_user_attr("candidate", candidate)
        return reconstruction_loss(problem, candidate, seed + trial.number)

    study.optimize(objective, timeout=seconds, catch=(Exception,))
    best = study.best_trial
    return best.user_attrs["candidate"], seed + best.number, len(study.trials)


def run_kt_recon(problem, space, seconds, seed):
    import keras_tuner as kt

    from search.suggest import KerasTunerSuggest, sample

    deadline = time.time() + seconds
    found = {}

    class ReconstructionTuner(kt.RandomSearch):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if time.time() >= deadline:  # the budget: start no more trials
                self.oracle.max_trials = len(self.oracle.trials)

        def run_trial(self, trial, *args, **kwargs):
            candidate = sample(space, KerasTunerSuggest(trial.hyperparameters))
            number = len(found)
            found[trial.trial_id] = (candidate, seed + number)
            return {"val_loss": reconstruction_loss(problem, candidate, seed + number)}

    tuner = ReconstructionTuner(objective=kt.Objective("val_loss", "min"), max_trials=10**6, seed=seed,
                                directory=tempfile.mkdtemp(), project_name="kt", max_consecutive_failed_trials=10**6)
    tuner.oracle.update_space(KerasTunerSuggest.declare(kt.HyperParameters(), space))
    tuner.search(verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    candidate, trial_seed = found[best.trial_id]
    return candidate, trial_seed, len(found)


def overhead(study_dir):
    """Engine search span over a bare loop doing the same fits, encodings and probe CVs.
    The bare loop runs in a fresh process, so it pays TensorFlow's first-use costs (graph
    machinery, kernel loading) the way the engine's first trial does."""
    from search.storage import load
    from search.study import open_study

    trials = _finished(load(open_study(study_dir)))
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    checkpoints = sum(t.user_attrs.get("seconds", {}).get("checkpoints", 0.0) for t in trials)
    out = subprocess.run([sys.executable, __file__, "--bare-loop", str(study_dir)], check=True,
                         capture_output=True, text=True).stdout
    bare = json.loads(out.strip().splitlines()[-1])["bare_s"]
    return {"trials": len(trials), "engine_s": round(span, 1), "bare_s": round(bare, 1),
            "checkpoints_s": round(checkpoints, 1), "ratio": round(span / bare, 3)}


def _finished(optuna_study):
    return [t for t in optuna_study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]


def bare_loop(study_dir):
    """What a hand-written Keras loop would do with the engine's configurations: fit each
    one (a pruned one for the epochs it ran), encode, and score the probe by CV. Seconds."""
    from encoderkit.probe import cv_score
    from encoderkit.transformer import AutoencoderTransformer
    from search.storage import load
    from search.study import open_study
    from search.suggest import transformer_params

    study = open_study(study_dir)
    problem = study.problem()
    trials = sorted(_finished(load(study)), key=lambda t: t.datetime_start)
    started = time.perf_counter()
    for t in trials:
        candidate = t.user_attrs["candidate"]
        if t.state.name == "PRUNED":
            epochs = max(t.intermediate_values)
            candidate = {**candidate, "training": {**candidate["training"], "epochs": epochs}}
        fitted = AutoencoderTransformer(**transformer_params(candidate, t.user_attrs["seed"], problem.dataset.shape))
        fitted.fit(problem.X)
        if t.state.name == "COMPLETE":
            cv_score(fitted.transform(problem.X), problem.y, problem.metric, problem.folds, problem.seed,
                     problem.probe, problem.probe_jobs)
    return time.perf_counter() - started


def without_start_points(space_name):
    """The space file minus its `start` points: every method searches the same space from
    scratch, so the comparison measures objectives and engines, not prior knowledge."""
    import yaml

    from search.space import builtin_spaces

    path = builtin_spaces().get(space_name, Path(space_name))
    document = yaml.safe_load(path.read_text())
    if "start" not in document:
        return space_name
    document.pop("start")
    stripped = Path(tempfile.mkdtemp()) / path.name
    stripped.write_text(yaml.safe_dump(document))
    return str(stripped)


def compare(data, space_name, seconds, seed):
    from search.study import open_study

    space_name = without_start_points(space_name)
    rows = {}
    result, study_dir = run_engine(data, space_name, seconds, seed)
    problem = open_study(study_dir).problem()
    space = open_study(study_dir).space()
    rows["engine"] = {**result.test, "trials": _count(study_dir)}
    rows["engine"]["overhead"] = overhead(study_dir)
    result, study_dir = run_engine(data, space_name, seconds, seed, backend="kerastuner", algorithm="random")
    rows["random-probe"] = {**result.test, "trials": _count(study_dir)}
    candidate, trial_seed, count = run_kt_recon(problem, space, seconds, seed)
    rows["kt-recon"] = {**held_out(problem, candidate, trial_seed), "trials": count}
    candidate, trial_seed, count = run_optuna_recon(problem, space, seconds, seed)
    rows["optuna-recon"] = {**held_out(problem, candidate, trial_seed), "trials": count}
    return {"data": data, "seed": seed, "metric": problem.metric, "methods": rows}


def _count(study_dir):
    from search.storage import finished_count, load
    from search.study import open_study

    return finished_count(load(open_study(study_dir)))


def render(runs):
    lines = ["# Engine vs keras-tuner and Optuna on reconstruction loss, and random search on the probe", "",
             f"Run as `.venv/bin/python benchmarks/compare.py --datasets DATA --minutes M --seeds S --space SPACE` "
             f"(the values per row below) on {platform.machine()} with {os.cpu_count()} cores, CPU only. Same space (its "
             "start points removed, so every method starts from scratch) "
             "and wall-clock budget per search; winners refit on the search part and scored once on the test part "
             "by the reference probe; mean over seeds, [mean of the 95% bootstrap bounds].", "",
             "| data | space | minutes | metric | seeds | " + " | ".join(METHODS) + " |",
             "|---|---|---|---|---|" + "---|" * len(METHODS)]
    for data in dict.fromkeys(r["data"] for r in runs):
        mine = [r for r in runs if r["data"] == data]
        cells = []
        for method in METHODS:
            scores = [r["methods"][method] for r in mine]
            cells.append(f"{np.mean([s['score'] for s in scores]):.4f} [{np.mean([s['low'] for s in scores]):.4f}, "
                         f"{np.mean([s['high'] for s in scores]):.4f}] ({np.mean([s['trials'] for s in scores]):.0f} trials)")
        lines.append(f"| {data} | {mine[0].get('space', 'default')} | {mine[0].get('minutes', '?')} | {mine[0]['metric']} | "
                     f"{len(mine)} | " + " | ".join(cells) + " |")
    lines += ["", "Engine minus (b) and (c), in points of the test score, per dataset (mean over seeds; a negative "
              "difference smaller than the interval's half-width is no measurable difference):", ""]
    for data in dict.fromkeys(r["data"] for r in runs):
        mine = [r for r in runs if r["data"] == data]
        engine = np.array([r["methods"]["engine"]["score"] for r in mine])
        half = 100 * np.mean([(r["methods"]["engine"]["high"] - r["methods"]["engine"]["low"]) / 2 for r in mine])
        parts = []
        for other in ("kt-recon", "optuna-recon"):
            diff = 100 * np.mean(engine - np.array([r["methods"][other]["score"] for r in mine]))
            wins = sum(r["methods"]["engine"]["score"] >= r["methods"][other]["score"] for r in mine)
            parts.append(f"vs {other} {diff:+.2f} (engine at least as good on {wins} of {len(mine)} seeds)")
        lines.append(f"- {data}: " + "; ".join(parts) + f"; the engine's test interval half-width is {half:.2f}")
    lines += ["", "Engine overhead (search span / bare loop over the same configurations, run in a fresh process), "
              "per dataset over all its seeds (total engine seconds / total bare seconds):", ""]
    for data in dict.fromkeys(r["data"] for r in runs):
        spans = [r["methods"]["engine"]["overhead"] for r in runs if r["data"] == data]
        engine, bare = sum(o["engine_s"] for o in spans), sum(o["bare_s"] for o in spans)
        ratios = [o["ratio"] for o in spans]
        lines.append(f"- {data}: {engine / bare:.3f}x ({engine:.0f} s / {bare:.0f} s over {len(spans)} seed(s); "
                     f"per seed {min(ratios):.2f}x to {max(ratios):.2f}x)")
    lines += ["", "Per seed:", ""]
    for r in runs:
        o = r["methods"]["engine"]["overhead"]
        lines.append(f"- {r['data']} seed {r['seed']}: {o['trials']} trials, engine {o['engine_s']} s "
                     f"(of which intermediate probe checkpoints {o.get('checkpoints_s', '?')} s), bare {o['bare_s']} s, "
                     f"ratio {o['ratio']:.2f}x")
    notes = RESULTS / "compare-notes.md"  # what the numbers above mean, written by whoever ran them
    return "\n".join(lines) + "\n" + ("\n" + notes.read_text() if notes.exists() else "")


def _compare_in_fresh_process(data, seed, args):
    """Each seed's four searches run in a new process, as each would from the command line:
    run in one long-lived process, the engine's later seeds paid for the functions TensorFlow
    kept from hundreds of earlier trials (ratios 1.0x for seeds 0-1, up to 1.3x by seed 9)."""
    command = [sys.executable, __file__, "--one", data, str(seed), "--minutes", str(args.minutes),
               "--space", args.space]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["digits", "insurance", "fashion-mnist:n=10000"])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--space", default="default")
    parser.add_argument("--bare-loop", metavar="STUDY_DIR", help=argparse.SUPPRESS)  # the overhead's child
    parser.add_argument("--one", nargs=2, metavar=("DATA", "SEED"), help=argparse.SUPPRESS)  # one seed's child
    parser.add_argument("--render", action="store_true", help="only rewrite compare.md from compare.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "compare.md").write_text(render(json.loads((RESULTS / "compare.json").read_text())))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.bare_loop or args.one:
        from search.quiet import import_keras_quietly

        import_keras_quietly()
    if args.bare_loop:
        print(json.dumps({"bare_s": bare_loop(args.bare_loop)}))
        return
    if args.one:
        data, seed = args.one[0], int(args.one[1])
        print(json.dumps({**compare(data, args.space, 60 * args.minutes, seed), "space": args.space,
                          "minutes": args.minutes, "fresh_process": True}))
        return
    store = RESULTS / "compare.json"
    runs = json.loads(store.read_text()) if store.exists() else []
    for data in args.datasets:
        for seed in range(args.seeds):
            runs = [r for r in runs if not (r["data"] == data and r["seed"] == seed)]
            runs.append(_compare_in_fresh_process(data, seed, args))
            print(json.dumps(runs[-1]), flush=True)
            RESULTS.mkdir(exist_ok=True)
            store.write_text(json.dumps(runs, indent=1))
            (RESULTS / "compare.md").write_text(render(runs))
    print((RESULTS / "compare.md").read_text())


if __name__ == "__main__":
    main()
