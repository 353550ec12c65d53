"""The article's tables redone with an honest protocol.

    .venv/bin/python benchmarks/article.py insurance --seeds 10 --trials 20
    .venv/bin/python benchmarks/article.py fashion --n 20000 --subsample 10000 --minutes 16

Insurance (n=1000, the article's 300-row test split): for each seed a new dataset and split;
raw, PCA, handcrafted, each of the article's six families at one fixed config
(spaces/article.yaml), and the best of a search over spaces/sequence.yaml (selected by CV on
the 700 search rows only), all scored once on the test rows by test AUROC. Mean and 95%
t-interval over seeds, the generator's Bayes-optimal AUROC beside them.

Fashion-MNIST (our MNIST: MNIST itself cannot be downloaded here): a stratified subsample of
`--n` training images is the search part, the official 10k test images the test part; raw,
PCA, each family at the article's config shrunk by `--scale`, and the best of a search over
spaces/image.yaml limited to `--minutes` of wall time on this machine (with `--subsample`,
trials see that many of the search part's rows and the winner is refit on all of them).

Results go to benchmarks/results/article.md (the raw numbers to article-*.json)."""

import argparse
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RESULTS = Path(__file__).parent / "results"
ARTICLE = {  # the article's reported numbers (one split, test-set tuned)
    "insurance": {"raw": 92.21, "pca": 91.13, "handcrafted": 93.61, "dense": 93.93, "denoising": 93.71,
                  "seq2seq": 91.42, "conv1d": 91.51, "conv2d": 92.65, "vae": 90.87},
    "fashion": {"raw": 92.00, "pca": 91.43, "dense": 96.94, "denoising": 96.93, "conv1d": 97.57,
                "seq2seq": 97.60, "vae": 96.52, "conv2d": 98.86},
}


CEILING_SEEDS = 200  # seeds of the no-training perfect-encoder rows (about 5 s)
TARGET_FASHION = 88.0  # test accuracy x 100 the families issue asks for within 60 CPU minutes


def fixed_family_scores(problem, space, seed):
    """Each family of the article space at its fixed config, fit on the search part."""
    from encoderkit.transformer import AutoencoderTransformer
    from search.refit import held_out_score
    from search.suggest import FixedSuggest, sample, transformer_params

    X_test, y_test = problem.test_part()
    scores = {}
    for family in space.family_names:
        candidate = sample(space, FixedSuggest({"family": family}))
        transformer = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape))
        scores[family] = held_out_score(problem, transformer.fit(problem.X), X_test, y_test)["score"]
    return scores


def oracle_score(problem, features, scaler="minmax"):
    """Test AUROC of the reference probe (logistic regression, C=1, fit on the 700 search
    rows) on hand-given `features` instead of learned codes, with its scaler swapped for a
    standardising one when `scaler="standard"`. No training: it shows what the protocol can
    reach with the best features an encoder could find."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X_test, y_test = problem.test_part()
    scale = StandardScaler() if scaler == "standard" else MinMaxScaler()
    probe = make_pipeline(scale, LogisticRegression(max_iter=1000)).fit(features(problem.X), problem.y)
    return float(roc_auc_score(y_test, probe.predict_proba(features(X_test))[:, 1]))


def raw_and_payment_count(X):
    """The raw columns plus the true number of periods with a payment: what an encoder with
    `include_input` and one perfect code unit would hand the probe (the two sums are linear in
    the raw columns, the count is the one non-linear statistic)."""
    from encoderkit.data import insurance_sufficient_statistics

    return np.column_stack([X, insurance_sufficient_statistics(X)[:, 2]])


def _sufficient(X):
    from encoderkit.data import insurance_sufficient_statistics

    return insurance_sufficient_statistics(X)


# Oracle rows: (features, probe scaler). The sums are heavy-tailed (exponential): min-max
# scaling squeezes most rows near 0 and C=1 then shrinks their weights hard, so each oracle is
# also shown under a standardising probe, to split the gap to the Bayes score between the
# reference probe and the features.
ORACLES = {
    "oracle": (_sufficient, "minmax"),
    "oracle_standardized": (_sufficient, "standard"),
    "oracle_raw_count": (raw_and_payment_count, "minmax"),
    "oracle_raw_count_standardized": (raw_and_payment_count, "standard"),
}


def insurance_spec(seed):
    return f"insurance:n=1000,seed={seed}"


def insurance_problem(seed):
    """Seed `seed`'s dataset and its split: the article's 300 test rows, AUROC."""
    from encoderkit.data import load_dataset
    from search.problem import make_problem

    return make_problem(load_dataset(insurance_spec(seed)), test_size=0.3, seed=seed, metric="roc_auc")


def bayes_score(problem):
    """AUROC of the generator's Bayes-optimal score on the problem's test rows."""
    from encoderkit.data import insurance_log_odds
    from sklearn.metrics import roc_auc_score

    X_test, y_test = problem.test_part()
    return float(roc_auc_score(y_test, insurance_log_odds(X_test)))


def add_oracle_rows(rows):
    """Adds the oracle rows to stored seeds that lack them (they need no training)."""
    for seed, row in enumerate(rows):
        missing = [name for name in ORACLES if name not in row]
        if missing:
            problem = insurance_problem(seed)
            row.update({name: oracle_score(problem, *ORACLES[name]) for name in missing})
    return rows


def rescore_baselines(part, stored):
    """The baseline rows again, with today's baselines (they need no training): after a baseline
    changes, the table stays honest without rerunning the searches. The record keeps the date."""
    from encoderkit.baselines import baselines_for
    from search.refit import held_out_score

    if part == "insurance":
        problems = [(row, insurance_problem(seed)) for seed, row in enumerate(stored["rows"])]
    else:
        problems = [(stored, fashion_problem(stored["n"]))]
    for row, problem in problems:
        X_test, y_test = problem.test_part()
        for name, make in baselines_for(problem.dataset, len(problem.y)).items():
            started = time.perf_counter()
            score = held_out_score(problem, make().fit(problem.X), X_test, y_test)
            if part == "insurance":
                row[name] = score["score"]
            else:
                row["scores"][name], row["seconds"][name] = score, time.perf_counter() - started
            print(f"{name}: {score['score']:.4f}", flush=True)
    stored["baselines_rescored"] = time.strftime("%Y-%m-%d")
    return stored


def _rescored_line(record):
    if not record.get("baselines_rescored"):
        return []
    return [f"The baseline rows (raw, pca and, where the data has one, handcrafted) were re-scored on "
            f"{record['baselines_rescored']} with the baselines of that day (`--from-json --baselines`, no "
            "training); the other rows are from the run above.", ""]


def ceiling(seeds):
    """Over many seeds (no training): the perfect encoder under the reference and a standardising
    probe, and the Bayes score on the same test rows. It shows how much of the 1.0-point target
    the probe and the 300 test rows leave to the encoder, and how lucky seeds 0-9 are."""
    rows = []
    for seed in range(seeds):
        problem = insurance_problem(seed)
        rows.append({"oracle": oracle_score(problem, *ORACLES["oracle"]),
                     "oracle_standardized": oracle_score(problem, *ORACLES["oracle_standardized"]),
                     "bayes": bayes_score(problem)})
    return {"seeds": seeds, **{name: float(np.mean([r[name] for r in rows])) for name in rows[0]}}


def insurance(args):
    import search
    from encoderkit.baselines import baselines_for
    from encoderkit.data import insurance_log_odds, load_dataset
    from search.refit import held_out_score
    from search.space import load_space
    from sklearn.metrics import roc_auc_score

    article, _ = load_space("article").for_kind("sequence")
    rows = []
    for seed in range(args.seeds):
        started = time.perf_counter()
        problem = insurance_problem(seed)
        X_test, y_test = problem.test_part()
        row = {name: held_out_score(problem, make().fit(problem.X), X_test, y_test)["score"]
               for name, make in baselines_for(problem.dataset, len(problem.y)).items()}
        row["bayes"] = bayes_score(problem)
        row.update({name: oracle_score(problem, *oracle) for name, oracle in ORACLES.items()})
        row.update(fixed_family_scores(problem, article, seed))
        with tempfile.TemporaryDirectory() as tmp:
            result = search.run(insurance_spec(seed), space="sequence", trials=args.trials, seed=seed, test_size=0.3,
                                metric="roc_auc", study_dir=Path(tmp) / "s", progress=False)
        row["searched"] = result.test["score"]
        row["searched_config"] = result.best_params["family"]
        rows.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float))
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    big = load_dataset("insurance:n=1000000,seed=12345")
    bayes_population = float(roc_auc_score(big.y, insurance_log_odds(big.X)))
    return rows, bayes_population


def store_insurance(rows, bayes_population, wall, many, rescored=None):
    record = {"rows": rows, "bayes_population": bayes_population, "wall_s": wall, "ceiling": many}
    if rescored:
        record["baselines_rescored"] = rescored
    (RESULTS / "article-insurance.json").write_text(json.dumps(record, indent=1))


def fashion_spec(n):
    return f"fashion-mnist:n={n},seed=0"


def fashion_problem(n):
    """The search part (n training images) and the official 10k test images, accuracy."""
    from encoderkit.data import load_dataset
    from search.problem import make_problem

    return make_problem(load_dataset(fashion_spec(n)), seed=0, metric="accuracy")


def fashion(args):
    import search
    from encoderkit.baselines import baselines_for
    from search.refit import held_out_score
    from search.space import load_space

    spec = fashion_spec(args.n)
    problem = fashion_problem(args.n)
    dataset = problem.dataset
    X_test, y_test = problem.test_part()
    scores, seconds = {}, {}
    for name, make in baselines_for(dataset, len(problem.y)).items():
        started = time.perf_counter()
        scores[name] = held_out_score(problem, make().fit(problem.X), X_test, y_test)
        seconds[name] = time.perf_counter() - started
        print(f"{name}: {scores[name]['score']:.4f} ({seconds[name]:.0f} s)", flush=True)
    article, _ = load_space("article", args.scale).for_kind("image")
    for family in article.family_names:
        started = time.perf_counter()
        single = replace(article, families=tuple(f for f in article.families if f.name == family))
        scores[family] = _held_out_family(problem, single, X_test, y_test)
        seconds[family] = time.perf_counter() - started
        print(f"{family}: {scores[family]['score']:.4f} ({seconds[family]:.0f} s)", flush=True)
    started, cpu_started, machine_started = time.perf_counter(), _cpu_seconds(), _machine_busy_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        result = search.run(spec, space="image", trials=10_000, timeout=args.minutes * 60, seed=0,
                            metric="accuracy", subsample=args.subsample, study_dir=Path(tmp) / "study",
                            progress=False)
    seconds["searched"] = time.perf_counter() - started
    scores["searched"] = result.test
    record = {"scores": scores, "seconds": seconds, "n": args.n, "subsample": args.subsample, "scale": args.scale,
              "minutes": args.minutes,
              "search_cpu_minutes": (_cpu_seconds() - cpu_started) / 60,
              "machine_cpu_minutes": (_machine_busy_seconds() - machine_started) / 60, "winner": result.best_params,
              "trials": re.search(r"(\d+) trials", result.leaderboard).group(1), "leaderboard": result.leaderboard}
    (RESULTS / "article-fashion.json").write_text(json.dumps(record, indent=1, default=str))
    return record


def _cpu_seconds():
    """User + system CPU time of this process and its finished children (all threads)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds():
    """Busy CPU seconds of the whole machine (all cores, all processes) from /proc/stat: an
    upper bound that also counts the probe's pooled joblib workers, which a process's own
    rusage misses while they stay alive. Meaningful when nothing else runs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _held_out_family(problem, space, X_test, y_test):
    from encoderkit.transformer import AutoencoderTransformer
    from search.refit import held_out_score
    from search.suggest import FixedSuggest, sample, transformer_params

    candidate = sample(space, FixedSuggest({}))
    transformer = AutoencoderTransformer(**transformer_params(candidate, 0, problem.dataset.shape))
    return held_out_score(problem, transformer.fit(problem.X), X_test, y_test)


def write_fashion(record):
    scores, seconds = record["scores"], record["seconds"]
    subsample = record.get("subsample")
    lines = [
        "## Fashion-MNIST, test accuracy x 100 (official 10k test images)",
        "",
        f"Command: `.venv/bin/python benchmarks/article.py fashion --n {record['n']} "
        + (f"--subsample {subsample} " if subsample else "")
        + f"--minutes {record['minutes']} --scale {record['scale']}` on {platform.machine()} with {os.cpu_count()} "
        "cores, CPU only.",
        f"Search part: a stratified subsample of {record['n']} training images"
        + (f"; each trial trained and was scored (5-fold CV) on a stratified {subsample} of them, and the winner "
           f"was refit on all {record['n']} (`--subsample`)" if subsample else "")
        + ". The article's column is MNIST "
        "(it cannot be downloaded here), so it is context, not a like-for-like comparison. Families at "
        f"spaces/article.yaml's configs scaled by {record['scale']}; the searched best ran spaces/image.yaml for "
        f"{record['minutes']} wall minutes (then one refit and the test score): "
        f"{_budget_minutes(record):.1f} CPU minutes in all{_budget_basis(record)}, {record.get('trials', '?')} trials.",
        "",
        "| method | article (MNIST, one split) | ours | 95% bootstrap interval | wall s |",
        "|---|---|---|---|---|",
    ]
    for name, score in scores.items():
        article = ARTICLE["fashion"].get(name, "-")
        lines.append(f"| {name} | {article} | {100 * score['score']:.2f} | "
                     f"[{100 * score['low']:.2f}, {100 * score['high']:.2f}] | {seconds[name]:.0f} |")
    winner = record["winner"] or {}
    searched, raw = 100 * scores["searched"]["score"], 100 * scores["raw"]["score"]
    over = _budget_minutes(record) - 60
    verdict = ("met" if searched >= TARGET_FASHION and over <= 0
               else f"not met: {TARGET_FASHION - searched:.2f} points short" if searched < TARGET_FASHION
               else f"not met: {over:.1f} CPU minutes over")
    lines += ["", f"Winning config: `{winner}`", "",
              f"Target of the families issue: at least {TARGET_FASHION:.2f} within 60 CPU minutes on 2 cores. "
              f"Searched best {searched:.2f} ({searched - raw:+.2f} over raw pixels) in "
              f"{_budget_minutes(record):.1f} CPU minutes: {verdict}.", ""]
    lines += _rescored_line(record)
    if record.get("note"):
        lines += [record["note"], ""]
    return "\n".join(lines)


def _budget_minutes(record):
    """The larger of the process tree's and the whole machine's CPU minutes."""
    return max(record.get("search_cpu_minutes", float("nan")), record.get("machine_cpu_minutes", 0.0))


def _budget_basis(record):
    if "machine_cpu_minutes" not in record:
        return ""
    return (f" (the machine's busy CPU time over the search, {record['machine_cpu_minutes']:.1f}; this process "
            f"and its finished children, {record['search_cpu_minutes']:.1f})")


def interval(values):
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def write_insurance(rows, bayes_population, args, wall, many, rescored=None):
    names = ["raw", "pca", "handcrafted", "dense", "denoising", "vae", "conv1d", "conv2d", "seq2seq", "searched",
             "oracle", "oracle_standardized", "oracle_raw_count", "oracle_raw_count_standardized", "bayes"]
    labels = {"searched": "searched best (sequence space)", "bayes": "Bayes-optimal score on the same test rows",
              "oracle": "probe on the 3 sufficient statistics (a perfect encoder)",
              "oracle_standardized": "the same, probe with StandardScaler instead of MinMaxScaler",
              "oracle_raw_count": "probe on the raw columns plus the true number of payments",
              "oracle_raw_count_standardized": "the same, probe with StandardScaler instead of MinMaxScaler"}
    lines = [
        "## Insurance (synthetic, n=1000, 300-row test split), test AUROC x 100",
        "",
        f"Command: `.venv/bin/python benchmarks/article.py insurance --seeds {args.seeds} --trials {args.trials}` "
        f"on {platform.machine()} with {os.cpu_count()} cores, CPU only; {wall / 60:.0f} minutes.",
        f"{len(rows)} seeds (each a new dataset and split). Families at the fixed configs of spaces/article.yaml; "
        f"the searched best was chosen by 5-fold CV AUROC on the 700 search rows, {args.trials} trials per seed.",
        f"Bayes-optimal AUROC of the generator (1,000,000 rows): {100 * bayes_population:.2f}.",
        "",
        "| method | article (one split) | ours: mean | 95% interval over seeds |",
        "|---|---|---|---|",
    ]
    for name in names:
        mean, low, high = interval([r[name] for r in rows])
        article = ARTICLE["insurance"].get(name)
        lines.append(f"| {labels.get(name, name)} | {article if article else '-'} | {100 * mean:.2f} | "
                     f"[{100 * low:.2f}, {100 * high:.2f}] |")
    families = {}
    for r in rows:
        families[r["searched_config"]] = families.get(r["searched_config"], 0) + 1
    lines += ["", f"Families the search picked, by seed count: {families}.", ""]
    lines += _rescored_line({"baselines_rescored": rescored})
    mean = {k: 100 * np.mean([r[k] for r in rows]) for k in
            ("searched", "handcrafted", "oracle", "oracle_standardized", "oracle_raw_count",
             "oracle_raw_count_standardized", "bayes")}
    bayes = 100 * bayes_population
    needed = bayes - 1.0
    best_oracle = max(v for k, v in mean.items() if k.startswith("oracle"))
    near_bayes = "met" if mean["searched"] >= needed else f"not met: {needed - mean['searched']:.2f} points short"
    lines += [
        f"Targets of the families issue: searched best at least handcrafted ({mean['searched']:.2f} vs "
        f"{mean['handcrafted']:.2f}: {'met' if mean['searched'] >= mean['handcrafted'] else 'not met'}), and within "
        f"1.0 point of the Bayes-optimal AUROC, i.e. at least {needed:.2f} "
        f"({near_bayes}).", "",
        f"How close can any encoder get? The Bayes score is linear in three statistics of a row (total insured "
        f"value, total premium, number of periods with a payment). Handing exactly those to the reference probe "
        f"(MinMaxScaler + logistic regression, C=1, fit on the 700 search rows) scores {mean['oracle']:.2f}; under a "
        f"probe that standardises instead, {mean['oracle_standardized']:.2f}. An encoder that keeps its input "
        f"(`include_input`) and adds one perfect code unit, the payment count (the two sums are linear in the raw "
        f"columns), scores {mean['oracle_raw_count']:.2f} and {mean['oracle_raw_count_standardized']:.2f}. "
        f"{'No' if best_oracle < needed else 'Only a near-perfect'} encoder reaches {needed:.2f} on these seeds: the best "
        f"of these perfect-feature rows is {best_oracle:.2f}. The distance is the probe's (fit on 700 rows) and "
        f"the test rows' (the Bayes score on the same rows averages {mean['bayes']:.2f}, {bayes - mean['bayes']:.2f} "
        f"below the population's; AUROC on 300 rows has a standard error of about 2 points), not the encoder's. "
        f"The searched best is {mean['oracle'] - mean['searched']:.2f} points below the perfect encoder under the same "
        f"probe and {mean['bayes'] - mean['searched']:.2f} below the Bayes score on its own test rows.", "",
        f"Over {many['seeds']} seeds (seeds 0-{many['seeds'] - 1}, no training needed) the perfect encoder averages "
        f"{100 * many['oracle']:.2f} under the reference probe and {100 * many['oracle_standardized']:.2f} under a "
        f"standardising one, and the Bayes score on the same 300 test rows {100 * many['bayes']:.2f}: the reference "
        f"probe alone sits {bayes - 100 * many['oracle']:.2f} points below the population's Bayes AUROC, so the "
        f"1.0-point target leaves an encoder {1.0 - (bayes - 100 * many['oracle']):.2f} points in expectation, and "
        f"seeds 0-{len(rows) - 1} are {100 * many['oracle'] - mean['oracle']:.2f} points harder than the average seed "
        f"for the same perfect encoder.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["insurance", "fashion"])
    parser.add_argument("--seeds", type=int, default=10, help="insurance: datasets and splits")
    parser.add_argument("--trials", type=int, default=20, help="insurance: search trials per seed")
    parser.add_argument("--n", type=int, default=10000, help="fashion: training images in the search part")
    parser.add_argument("--subsample", type=int, default=None,
                        help="fashion: rows of the search part each trial sees (the winner is refit on all)")
    parser.add_argument("--minutes", type=float, default=60, help="fashion: search wall-time budget")
    parser.add_argument("--scale", type=float, default=0.25, help="fashion: shrink the article's families")
    parser.add_argument("--from-json", action="store_true",
                        help="re-render from the stored results (insurance: adding rows that need no training)")
    parser.add_argument("--baselines", action="store_true",
                        help="with --from-json: re-score the baseline rows with today's baselines (no training)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    if args.baselines and not args.from_json:
        parser.error("--baselines re-scores a stored run: give --from-json too")
    if args.part == "insurance" and args.from_json:
        stored = json.loads((RESULTS / "article-insurance.json").read_text())
        if args.baselines:
            stored = rescore_baselines("insurance", stored)
        rows, bayes_population, wall = add_oracle_rows(stored["rows"]), stored["bayes_population"], stored["wall_s"]
        many, rescored = stored.get("ceiling") or ceiling(CEILING_SEEDS), stored.get("baselines_rescored")
        store_insurance(rows, bayes_population, wall, many, rescored)
        text = write_insurance(rows, bayes_population, args, wall, many, rescored)
    elif args.from_json:
        record = json.loads((RESULTS / "article-fashion.json").read_text())
        if args.baselines:
            record = rescore_baselines("fashion", record)
            (RESULTS / "article-fashion.json").write_text(json.dumps(record, indent=1, default=str))
        text = write_fashion(record)
    elif args.part == "insurance":
        rows, bayes_population = insurance(args)
        wall = time.perf_counter() - started
        many = ceiling(CEILING_SEEDS)
        store_insurance(rows, bayes_population, wall, many)
        text = write_insurance(rows, bayes_population, args, wall, many)
    else:
        text = write_fashion(fashion(args))
    sections = _sections()
    sections[args.part] = text
    (RESULTS / "article.md").write_text(
        "# The article's tables, redone honestly\n\n" + "\n".join(sections[k] for k in ("insurance", "fashion") if k in sections)
    )
    print(text)


def _sections():
    """The parts already in article.md, so running one part keeps the other."""
    path = RESULTS / "article.md"
    if not path.exists():
        return {}
    text = path.read_text()
    found = {}
    for key, title in (("insurance", "## Insurance"), ("fashion", "## Fashion-MNIST")):
        if title in text:
            start = text.index(title)
            ends = [text.index(t) for t in ("## Insurance", "## Fashion-MNIST") if t in text and text.index(t) > start]
            found[key] = text[start : min(ends) if ends else len(text)].rstrip() + "\n"
    return found


if __name__ == "__main__":
    main()
