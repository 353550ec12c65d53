"""The HTML report of a digits study: always generated and parsed (Python's html.parser) and
checked against the study it reports on (leaderboard rows = the stored trials, the best trial,
the baselines, every plot a decodable PNG); where Chromium is installed, it also opens in
headless Chromium with every embedded image decoded."""

import base64
import html.parser
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from search.testing.backend_conformance import stored_trials
from tests.conftest import TINY_SPACE, run_cli

# Both tests read the one study of the module fixture: keep them on one test worker.
pytestmark = pytest.mark.xdist_group("report")

SECTIONS = ["leaderboard", "optimization-history", "parameter-importances", "score-by-family", "trial-cost",
            "winner-s-codes-in-2-d", "inputs-and-reconstructions"]
PLOTTED = [s for s in SECTIONS if s != "leaderboard"]  # each shows at least one plot
ROW = re.compile(r"^\s*(\d+)\s+(trial \d+|baseline \w+)\s+(\S+)\s+(\d\.\d{4}) ± (\d\.\d{4})\s")


# Session scope: a module fixture is made again whenever xdist runs another module's test
# between two of this group's (seen in CI: twice per run).
@pytest.fixture(scope="session")
def report(tmp_path_factory):
    study = tmp_path_factory.mktemp("report") / "study"
    ran = run_cli("run", "--space", TINY_SPACE, "--trials", 4, "--study-dir", study, "--no-progress")
    assert ran.returncode == 0, ran.stderr[-2000:]
    for flags in (["--html"], ["-o", study / "report.html"]):  # the second replaces the first; -o implies --html
        made = run_cli("report", study, *flags)
        assert made.returncode == 0, made.stderr[-2000:]
        assert "Warning" not in made.stderr, made.stderr[-2000:]  # Optuna's per-parameter warnings go in the page
    assert not list(study.glob(".report.html.tmp-*"))
    return study, (study / "report.html").read_text()


class Page(html.parser.HTMLParser):
    """The report's title, its sections (id -> text, <pre> text, images, table rows), and
    anything that would reach outside the file."""

    def __init__(self, text):
        super().__init__()
        self.title, self.sections, self.scripts, self.links = "", {}, 0, []
        self._section, self._in, self._row = None, [], None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if tag == "section":
            self._section = self.sections[attrs["id"]] = {"text": "", "pre": "", "images": [], "rows": []}
        elif tag == "script":
            self.scripts += 1
        elif tag == "img" and self._section is not None:
            self._section["images"].append(attrs.get("src", ""))
            self._in.pop()  # a void element
        elif tag == "tr" and self._section is not None:
            self._row = []
            self._section["rows"].append(self._row)
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith("data:"):
                self.links.append(attrs[name])

    def handle_endtag(self, tag):
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag):]
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if "title" in self._in:
            self.title += data
        if self._section is not None:
            self._section["text"] += data
            if "pre" in self._in:
                self._section["pre"] += data
            if self._row is not None and ("td" in self._in or "th" in self._in):
                self._row.append(data)


def png_pixels(src):
    """The decoded image of a `data:image/png;base64,...` source."""
    import matplotlib.image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def test_the_test_workers_honour_xdist_groups(request):
    """The suite's groups (one study per module fixture, one Ray cluster at a time, one
    PostgreSQL server) hold only if pytest-xdist's `--dist loadgroup` works with this pytest
    (it did not with pytest 9.2, pytest-xdist#1386)."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@report"), request.node.nodeid


def test_html_report_holds_the_studys_trials_best_trial_baselines_and_plots(report):
    study, text = report
    page = Page(text)
    assert "http://" not in text and "https://" not in text, "the report must be self-contained"
    assert page.scripts == 0 and page.links == []
    assert page.title == "Study report: digits · tiny · optuna"
    assert list(page.sections) == SECTIONS

    # The leaderboard: one row per stored trial with its stored score, one per baseline with
    # its CV score, best first; the held-out line names the best trial.
    trials = stored_trials(study)
    complete = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
    assert complete
    board = page.sections["leaderboard"]["pre"]
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    assert board.startswith(f"Leaderboard (accuracy, {len(trials)} trials: {states['COMPLETE']} complete, "
                            f"{states['PRUNED']} pruned, {states['FAIL']} failed)")
    rows = [ROW.match(line) for line in board.splitlines()]
    rows = [m.groups() for m in rows if m]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    shown = {name: float(score) for _, name, _, score, _ in rows}
    assert {n: shown[n] for n in shown if n.startswith("trial ")} == {
        f"trial {number}": round(value, 4) for number, value in complete.items()}
    for trial in trials:
        if trial.state.name == "COMPLETE":
            (row,) = [r for r in rows if r[1] == f"trial {trial.number}"]
            assert row[2] == trial.user_attrs["candidate"]["family"]
        elif trial.state.name == "FAIL":
            assert f"trial {trial.number}" in board and "failed: " in board
    baselines = json.loads((study / "baselines.json").read_text())
    assert {"raw", "pca"} <= set(baselines)
    assert {n: shown[n] for n in shown if n.startswith("baseline ")} == {
        f"baseline {name}": round(b["cv_mean"], 4) for name, b in baselines.items()}
    best = max(complete, key=complete.get)
    assert json.loads((study / "export.json").read_text())["trial"] == best
    assert [r[1] for r in rows if r[1].startswith("trial ")][0] == f"trial {best}"
    assert re.search(rf"^Held-out test \(\d+ rows, used once\): winner trial {best} accuracy 0\.\d{{4}}",
                     board, re.MULTILINE)

    # Parameter importances: a table of parameters the trials have.
    table = page.sections["parameter-importances"]["rows"]
    assert [c.strip() for c in table[0]] == ["parameter", "importance (PED-ANOVA)"] and len(table) > 1
    searched = set().union(*(t.params for t in trials if t.state.name == "COMPLETE"))
    assert {row[0] for row in table[1:]} <= searched

    # Every plotting section shows a real image: a PNG that decodes to a drawing, not a blank.
    for name in PLOTTED:
        images = page.sections[name]["images"]
        assert images, f"{name}: no plot ({page.sections[name]['text'].strip()[:200]})"
        for src in images:
            pixels = png_pixels(src)
            assert pixels.shape[0] > 50 and pixels.shape[1] > 50, (name, pixels.shape)
            assert pixels[..., :3].std() > 0.01, f"{name}: a blank image"


def test_top_limits_the_html_leaderboard_as_it_does_the_printed_one(report, tmp_path):
    """`report --html --top N` was accepted and ignored: the page always showed 10 trials."""
    study, _ = report
    made = run_cli("report", study, "-o", tmp_path / "top.html", "--top", 1)
    assert made.returncode == 0, made.stderr[-2000:]
    board = Page((tmp_path / "top.html").read_text()).sections["leaderboard"]["pre"]
    shown = [m.group(2) for m in map(ROW.match, board.splitlines()) if m and m.group(2).startswith("trial ")]
    assert len(shown) == 1 and sum(t.state.name == "COMPLETE" for t in stored_trials(study)) > 1, board


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("chromium is not installed (make test installs Debian's chromium)")
    return found


def test_html_report_opens_in_headless_chromium_with_every_image_decoded(report, tmp_path):
    browser = chromium()
    _, page = report
    # Let the browser say how many images it decoded: the report itself has no scripts.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>document.title = 'decoded ' + "
                                  "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
                                  " + ' of ' + document.images.length;</script></body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    decoded = re.search(r"<title>decoded (\d+) of (\d+)</title>", dom)
    assert decoded, dom[:500]
    assert int(decoded.group(1)) == int(decoded.group(2)) >= 6


def test_plot_legends_sit_beside_the_plot_and_name_only_stages_the_study_had():
    """Inside the axes the history's legend hid a trial's point and the cost legend its bars,
    and a TensorFlow study's cost legend listed "compile", a stage it never had."""
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import cost_plot, history_plot

    trials = [types.SimpleNamespace(number=n, value=0.5 + n / 100,
                                    user_attrs={"candidate": {"family": "dense"},
                                                "seconds": {"fit": 2.0, "probe": 1.0, "compile": 0.0}})
              for n in range(4)]
    for fig in (history_plot(plt, trials, {"raw": {"cv_mean": 0.52}}, "accuracy"), cost_plot(plt, trials)):
        legend = fig.axes[0].get_legend()
        assert legend.get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1  # right of the axes
    assert [text.get_text() for text in legend.get_texts()] == ["fit", "probe"]
    plt.close("all")


class HalfwayEncoder:
    """An encoder whose reconstruction is known: each column pulled `kept` of the way from its
    mean to the input (R² = 1 - (1 - kept)²)."""

    def __init__(self, kept):
        self.kept = kept

    def reconstruct(self, X):
        X = np.asarray(X, dtype=float)
        return X.mean(axis=0) + self.kept * (X - X.mean(axis=0))


def _problem(X, y, kind, shape, names=None):
    import types

    dataset = types.SimpleNamespace(kind=kind, shape=shape, feature_names=names)
    return types.SimpleNamespace(X=X, y=y, seed=0, dataset=dataset)


def test_tabular_reports_show_the_columns_the_reconstruction_keeps_least_by_name_and_r2(rng):
    """A tabular study's report had no reconstruction section at all: now each column's R²,
    the worst first, named as the CSV names it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import RECONSTRUCTIONS, WORST_COLUMNS

    title, draw = RECONSTRUCTIONS["tabular"]
    kept = np.linspace(0.0, 1.0, 40)  # column i keeps kept[i]: R² rises with i
    X = rng.normal(size=(300, 40))
    names = tuple(f"col{i}" for i in range(40))
    fig = draw(plt, HalfwayEncoder(kept), _problem(X, np.zeros(300), "tabular", (40,), names))
    bars = fig.axes[0].patches
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(bars) == WORST_COLUMNS and labels[::-1] == [f"col{i}" for i in range(WORST_COLUMNS)]  # worst on top
    widths = [bar.get_width() for bar in bars][::-1]
    np.testing.assert_allclose(widths, 1 - (1 - kept[:WORST_COLUMNS]) ** 2, atol=1e-9)
    assert "the columns it keeps least, of 40" in fig.axes[0].get_title(loc="left")
    plt.close("all")
    assert title == "Columns the reconstruction keeps"


def test_sequence_reports_draw_sampled_series_over_their_reconstructions(rng):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import CHANNELS, RECONSTRUCTIONS, SERIES

    title, draw = RECONSTRUCTIONS["sequence"]
    X = rng.normal(size=(50, 30 * 5))  # flat rows of (30 steps, 5 channels)
    y = np.repeat(["a", "b"], 25)
    fig = draw(plt, HalfwayEncoder(0.5), _problem(X, y, "sequence", (30, 5)))  # X - 0.5 (X - mean)
    assert len(fig.axes) == SERIES and title == "Inputs and reconstructions"
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2 * CHANNELS and all(len(line.get_ydata()) == 30 for line in lines)
        drawn, rebuilt = lines[0].get_ydata(), lines[1].get_ydata()  # channel 0: input, then reconstruction
        assert any(np.array_equal(row.reshape(30, 5)[:, 0], drawn) for row in X)  # a sampled series, in steps
        assert not np.allclose(drawn, rebuilt) and lines[0].get_color() == lines[1].get_color()
        assert ax.get_title(loc="left").startswith("label ")
    assert "(channels 1-3 of 5)" in fig.axes[0].get_title()
    plt.close("all")


def test_constant_columns_are_left_out_of_the_column_plot_and_dollar_signs_stay_text(rng):
    """A constant column's spread rounds to about 1e-13, not 0: its R² came out near -1e21 and
    it was drawn as the worst-kept column. A name with two $ was parsed as mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import column_fits

    X = np.hstack([rng.normal(size=(300, 2)), np.full((300, 1), 0.1)])
    names = ("price $ in $", "b", "constant")
    problem = _problem(X, np.zeros(300), "tabular", (3,), names)
    fig = column_fits(plt, HalfwayEncoder(np.array([0.5, 0.9, 0.0])), problem)
    fig.canvas.draw()  # mathtext is parsed when drawn
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["b", r"price \$ in \$"]  # worst on top; shown as typed
    assert fig.axes[0].get_title(loc="left") == "every column, of 2 (and 1 constant)"
    plt.close("all")
    assert column_fits(plt, HalfwayEncoder(0.5), _problem(X[:, 2:], np.zeros(300), "tabular", (1,), None)) is None
