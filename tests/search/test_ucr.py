"""`--data ucr:NAME` through the command line: a bundled UCR/UEA dataset searched end to end,
with MiniRocket beside raw and PCA; names it cannot load end in one line and exit 2."""

import json

import pytest

from tests.conftest import ROOT, run_cli

TINY_SEQUENCE = ROOT / "tests" / "data" / "tiny_sequence.yaml"


def _one_line_error(result, expected):
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_ucr_names_it_cannot_load_exit_2_in_one_line(tmp_path):
    pytest.importorskip("aeon")
    study = tmp_path / "study"
    unknown = run_cli("run", "--data", "ucr:GunPont", "--study-dir", study, "--no-progress")
    _one_line_error(unknown, "ucr:GunPont: no bundled UCR/UEA dataset 'GunPont' (bundled with aeon")
    assert "ArrowHead, BasicMotions" in unknown.stderr
    unequal = run_cli("run", "--data", "ucr:JapaneseVowels", "--study-dir", study, "--no-progress")
    _one_line_error(unequal, "ucr:JapaneseVowels: series of unequal length (7 to 29 steps), the search needs one length: "
                             "use ucr:JapaneseVowels_eq")
    assert not study.exists()


def test_ucr_without_aeon_says_to_run_make_setup(tmp_path):
    fake = tmp_path / "site" / "aeon"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'aeon'\", name='aeon')\n")
    result = run_cli("run", "--data", "ucr:GunPoint", "--study-dir", tmp_path / "study", "--no-progress",
                     env={"PYTHONPATH": str(fake.parent)})
    _one_line_error(result, "ucr:GunPoint: the UCR/UEA datasets ship in aeon's wheel, and aeon is not installed here: "
                            "run `make setup`")


def test_a_ucr_search_runs_to_its_export_with_the_minirocket_baseline(tmp_path):
    """aeon's UnitTest (train 20, test 22 series of 24 steps): its official test series are the
    held-out part, and MiniRocket is scored beside raw and PCA in CV and on the test part."""
    pytest.importorskip("aeon")
    study = tmp_path / "study"
    result = run_cli("run", "--data", "ucr:UnitTest", "--space", TINY_SEQUENCE, "--trials", "2", "--no-progress",
                     "--fresh-process", "0", "--study-dir", study, "--test-size", "0.5", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # the archive's split is the test part: a test size it does not use is said, not taken in silence
    assert "note: test_size 0.5: not used; ucr:UnitTest brings its own test part (22 rows)" in result.stdout
    out = result.stdout
    assert "baseline raw" in out and "baseline pca" in out and "baseline minirocket" in out and "9996 features" in out
    held_out = next(line for line in out.splitlines() if line.startswith("Held-out test (22 rows, used once)"))
    assert "; raw 0." in held_out and "; minirocket " in held_out, held_out
    manifest = json.loads((study / "export" / "manifest.json").read_text())
    assert set(manifest["baselines_test"]) == {"raw", "pca", "minirocket"}
    assert manifest["n_test_rows"] == 22 and manifest["n_fit_rows"] == 20
    assert manifest["split"] == {"test_part": "the dataset's own"}  # test_size was not used
    assert manifest["data"]["name"] == "ucr-UnitTest" and manifest["data"]["shape"] == [24, 1]
    assert manifest["data"]["kind"] == "sequence"
    assert set(json.loads((study / "baselines.json").read_text())) == {"raw", "pca", "minirocket"}
    report = run_cli("report", study, "--html")  # series drawn over their reconstructions
    assert report.returncode == 0, report.stderr[-2000:]
    page = (study / "report.html").read_text()
    drawn = page[page.index('<section id="inputs-and-reconstructions">'):]
    assert drawn.index('src="data:image/png;base64,') < drawn.index("</section>")


def test_the_series_space_runs_its_start_points_and_exports_a_per_series_encoder(tmp_path):
    """spaces/series.yaml on aeon's UnitTest: its two hand-built start points are its first
    trials and finish; the second's per-series scaling and global-mean code reach the export."""
    pytest.importorskip("aeon")
    import search
    from encoderkit import load_encoder
    from encoderkit.series_scaler import SeriesStandardScaler

    result = search.run("ucr:UnitTest", space="series", scale=0.25, trials=2, metric="accuracy",
                        study_dir=tmp_path / "study", fresh_process=0, progress=False, verbose=False)
    assert [t.state for t in result.trials] == ["complete", "complete"]
    assert [t.params["scaling"] for t in result.trials] == ["standard", "series"]
    assert result.trials[1].params["conv1d.code_pooling"] == "global_average"
    encoder = load_encoder(result.export_dir)
    series_scaled = isinstance(encoder.scaler_, SeriesStandardScaler)
    assert series_scaled == (result.best_trial == 1), (result.best_trial, type(encoder.scaler_))
