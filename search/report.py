"""`python -m search report STUDY --html`: one self-contained HTML file (plots embedded as PNG
data URIs, no network, no scripts) with the leaderboard, the optimization history, Optuna's
parameter importances, the score by family, the winner's codes in 2-D coloured by label and what
its reconstructions keep: images beside their reconstructions, series drawn over their
reconstructions, and for tabular data the columns the reconstruction keeps least.

The codes and reconstructions use the search part only (the test part stays untouched; its one
score is already in the leaderboard)."""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path

import numpy as np

MAX_POINTS = 2000  # rows drawn in the 2-D code plot
GRID = 8  # images per row in the reconstruction grid
SERIES = 4  # series drawn with their reconstructions
CHANNELS = 3  # channels drawn per series (more would be a tangle)
WORST_COLUMNS = 25  # tabular: the columns the reconstruction keeps least
REPORT_MARKER = "Study report: "  # in the page's title: a file -o may replace holds it


def write_html(study_dir, out=None, top=10) -> Path:
    from search.errors import disk_full_named, suggested_command
    from search.leaderboard import shown_trials
    from search.preflight import check_report_file
    from search.results import result_of
    from search.storage import load_readonly
    from search.study import atomic_write, open_study

    study = open_study(study_dir)
    path = check_report_file(Path(out) if out else study.directory / "report.html", REPORT_MARKER)
    optuna_study = load_readonly(study)
    trials = shown_trials(optuna_study)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    metric = study.manifest["metric"]
    board = result_of(study, optuna_study=optuna_study, top=top).leaderboard
    sections = [("Leaderboard", f"<pre>{html.escape(board)}</pre>")]
    sections.append(("Optimization history", _figure(history_plot, complete, study.baselines(), metric)))
    sections.append(("Parameter importances", _importances(optuna_study, complete)))
    sections.append(("Score by family", _figure(_by_family, complete, metric)))
    sections.append(("Trial cost", _figure(cost_plot, complete)))
    if (study.export_dir / "manifest.json").is_file():
        from encoderkit import load_encoder
        from search.quiet import import_keras_quietly

        import_keras_quietly()  # only a report with an export needs Keras: refusals stay quick
        encoder = load_encoder(study.export_dir)
        problem = study.problem()
        sections.append(("Winner's codes in 2-D", _figure(_codes_2d, encoder, problem)))
        title, draw = RECONSTRUCTIONS[problem.dataset.kind]
        sections.append((title, _figure(draw, encoder, problem, empty="Every column is constant on the search rows: "
                                                                      "there is nothing to reconstruct.")))
    else:
        todo = (f"run <code>{html.escape(suggested_command('export', study.directory))}</code>" if complete
                else "no trial has finished yet")
        sections.append(("Winner's codes in 2-D", f"<p>No export yet: {todo}.</p>"))
    again = suggested_command("report", study.directory, "-o", path)
    with disk_full_named(path.parent, again):
        atomic_write(path, _page(study, sections))  # a report cut short leaves the old one whole
    return path


def _page(study, sections) -> str:
    manifest = study.manifest
    title = f"{manifest['data_name']} · {manifest['space_name']} · {manifest['backend']}"
    body = "\n".join(f'<section id="{_anchor(name)}"><h2>{html.escape(name)}</h2>\n{content}</section>'
                     for name, content in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{REPORT_MARKER}{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head>
<body><h1>Study report: {html.escape(title)}</h1>
<p>{html.escape(str(study.directory))} · metric {html.escape(manifest['metric'])} ·
{manifest['n_search_rows']} search rows, {manifest['n_test_rows']} test rows · seed {manifest['seed']}</p>
{body}
</body></html>
"""


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _figure(draw, *args, empty="Not enough completed trials for this plot.") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt, *args)
    if fig is None:
        return f"<p>{html.escape(empty)}</p>"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def history_plot(plt, complete, baselines, metric):
    if not complete:
        return None
    numbers = [t.number for t in complete]
    values = [t.value for t in complete]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(numbers, values, s=18, label="trial")
    order = np.argsort(numbers)
    ax.step(np.array(numbers)[order], np.maximum.accumulate(np.array(values)[order]), where="post",
            color="C1", label="best so far")
    for i, (name, b) in enumerate(baselines.items()):
        ax.axhline(b["cv_mean"], linestyle="--", color=f"C{i + 2}", label=f"baseline {name}")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"CV {metric}")
    _legend_beside(ax)
    return fig


def _legend_beside(ax):
    """The legend right of the plot (saved with bbox_inches="tight"): inside it hid points and bars."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _importances(optuna_study, complete) -> str:
    import optuna

    if len(complete) < 2:
        return "<p>Not enough completed trials for parameter importances.</p>"
    try:
        # Optuna's default evaluator since 5.0, named so the table's header says what it is.
        # Its warning per parameter with a value seen in one trial goes into the page, not stderr.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            importances = optuna.importance.get_param_importances(
                optuna_study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as exc:  # e.g. no parameter common to all trials
        return f"<p>Parameter importances unavailable: {html.escape(str(exc))}</p>"
    if not importances:
        return "<p>No parameter is shared by all completed trials.</p>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items())
    chart = _figure(_importance_bars, importances)
    rough = sum("less than 2 trials" in str(w.message) for w in caught)
    caveat = (f"<p>{rough} parameter(s) have values seen in fewer than 2 completed trials: their importance "
              "is rough until the study has more.</p>") if rough else ""
    return f"{chart}<table><tr><th>parameter</th><th>importance (PED-ANOVA)</th></tr>{rows}</table>{caveat}"


def _importance_bars(plt, importances):
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance")
    return fig


def _family(trial) -> str:
    return trial.user_attrs.get("candidate", {}).get("family", "?")


def _by_family(plt, complete, metric):
    if not complete:
        return None
    families = sorted({_family(t) for t in complete})
    groups = [[t.value for t in complete if _family(t) == f] for f in families]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.boxplot(groups)
    ax.set_xticks(range(1, len(families) + 1), families)
    for i, values in enumerate(groups, 1):
        ax.scatter(np.full(len(values), i), values, s=12, alpha=0.6)
    ax.set_ylabel(f"CV {metric}")
    return fig


def cost_plot(plt, complete):
    """Mean seconds per stage of a trial, per family: where the search's time goes."""
    from search.leaderboard import STAGES, mean_stage_seconds

    families = sorted({_family(t) for t in complete})
    means = {f: mean_stage_seconds([t.user_attrs.get("seconds", {}) for t in complete if _family(t) == f])
             for f in families}
    if not any(means.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(families) + 1.5))
    left = np.zeros(len(families))
    for i, stage in enumerate(STAGES):
        widths = np.array([means[f].get(stage, 0.0) for f in families])
        if not widths.any():  # a stage this study never had (compile under TensorFlow)
            continue
        ax.barh(families, widths, left=left, color=f"C{i}", label=stage)
        left += widths
    ax.set_xlabel("mean seconds per completed trial")
    _legend_beside(ax)
    return fig


def _search_sample(problem, size):
    rng = np.random.default_rng(problem.seed)
    rows = rng.choice(len(problem.y), size=min(size, len(problem.y)), replace=False)
    return problem.X[rows], problem.y[rows]


def _codes_2d(plt, encoder, problem):
    from sklearn.decomposition import PCA

    from search.refit import named

    X, y = _search_sample(problem, MAX_POINTS)
    codes = encoder.transform(named(problem, X))  # by column name, as the encoder was fit (no warning)
    points = codes if codes.shape[1] == 2 else PCA(n_components=2, random_state=0).fit_transform(codes)
    fig, ax = plt.subplots(figsize=(7, 6))
    labels = np.unique(y)
    for i, label in enumerate(labels):
        mine = y == label
        ax.scatter(points[mine, 0], points[mine, 1], s=6, color=plt.cm.tab10(i % 10), label=_plain(label))
    ax.set_title(f"{codes.shape[1]}-d codes, first two principal components")
    if len(labels) <= 20:
        ax.legend(markerscale=3, fontsize=8, loc="best")
    return fig


def _rebuilt_sample(encoder, problem, size):
    """A seeded sample of search rows, the encoder's reconstruction of them, and their labels."""
    from search.refit import named

    X, y = _search_sample(problem, size)
    return X, np.asarray(encoder.reconstruct(named(problem, X))), y


def image_reconstructions(plt, encoder, problem):
    X, rebuilt, _ = _rebuilt_sample(encoder, problem, GRID)
    shape = problem.dataset.shape
    fig, axes = plt.subplots(2, len(X), figsize=(1.3 * len(X), 3))
    for col in range(len(X)):
        for row, images in enumerate((X, rebuilt)):
            image = images[col].reshape(shape)
            axes[row, col].imshow(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image, cmap="gray")
            axes[row, col].axis("off")
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
    return fig


def series_reconstructions(plt, encoder, problem):
    """Each sampled series (solid) with its reconstruction (dashed, same colour per channel)."""
    X, rebuilt, y = _rebuilt_sample(encoder, problem, SERIES)
    steps, channels = problem.dataset.shape
    drawn = min(channels, CHANNELS)
    fig, axes = plt.subplots(len(X), 1, figsize=(9, 1.8 * len(X)), sharex=True, squeeze=False)
    for ax, series, again, label in zip(axes[:, 0], X, rebuilt, y):
        series, again = series.reshape(steps, channels), again.reshape(steps, channels)
        for channel in range(drawn):
            ax.plot(series[:, channel], color=f"C{channel}", lw=1)
            ax.plot(again[:, channel], color=f"C{channel}", lw=1, ls="--")
        ax.set_title(f"label {_plain(label)}", fontsize=8, loc="left")
    which = "" if drawn == channels else f" (channels 1-{drawn} of {channels})"
    axes[0, 0].set_title(f"input (solid) and reconstruction (dashed){which}", fontsize=9)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # no step 0.5
    return fig


def column_fits(plt, encoder, problem):
    """R² of each column's reconstruction on a sample of search rows: the columns the code
    keeps least come first (1 = kept exactly, 0 = no better than the column's mean)."""
    X, rebuilt, _ = _rebuilt_sample(encoder, problem, MAX_POINTS)
    spread = ((X - X.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1 - ((X - rebuilt) ** 2).sum(axis=0) / spread
    r2[np.ptp(X, axis=0) == 0] = np.nan  # a constant column has no R² (its rounded spread is not quite 0)
    names = problem.dataset.feature_names or tuple(f"x{i}" for i in range(X.shape[1]))
    varying = [i for i in np.argsort(r2) if np.isfinite(r2[i])]
    shown = varying[:WORST_COLUMNS]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(shown) + 1))
    ax.barh([_plain(names[i]) for i in shown][::-1], np.maximum(r2[shown], -1)[::-1], color="C0")
    ax.set_xlim(max(-1.0, min(-0.05, r2[shown].min())), 1)
    ax.set_xlabel(f"R² of the reconstruction on {len(X)} search rows (below -1 drawn at -1)")
    kept_least = "the columns it keeps least" if len(shown) < len(varying) else "every column"
    constant = X.shape[1] - len(varying)
    ax.set_title(f"{kept_least}, of {len(varying)}{f' (and {constant} constant)' if constant else ''}",
                 fontsize=9, loc="left")
    return fig


def _plain(value) -> str:
    """A name or label as matplotlib shows it verbatim (two $ would start its mathtext)."""
    return str(value).replace("$", r"\$")


RECONSTRUCTIONS = {"image": ("Inputs and reconstructions", image_reconstructions),
                   "sequence": ("Inputs and reconstructions", series_reconstructions),
                   "tabular": ("Columns the reconstruction keeps", column_fits)}  # by the data's kind
