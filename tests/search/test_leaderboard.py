"""The leaderboard's text: what a config line shows and how the header counts."""

from search.leaderboard import Row, describe, format_leaderboard

SERIES_CANDIDATE = {
    "family": "conv1d", "code_size": 64, "include_input": False, "scaling": "series",
    "training": {"epochs": 30, "batch_size": 16, "learning_rate": 1e-3, "optimizer": "adam"},
    "family_params": {"layers": [{"filters": 8, "kernel_size": 5, "dilation": 2, "activation": "elu", "pool": True},
                                 {"filters": 8, "kernel_size": 5, "dilation": 1, "activation": "elu", "pool": True}],
                      "code_pooling": "global_max", "code_activation": "relu"},
}


def test_a_config_line_shows_the_searched_scaling_and_dilation():
    """The series space searches both: two trials that differed only in them read the same."""
    line = describe(SERIES_CANDIDATE)
    assert "stack=8k5d2elu/p-8k5elu/p" in line and "scale=series" in line
    assert "scale=" not in describe({**SERIES_CANDIDATE, "scaling": "minmax"})  # the default goes unsaid


def test_the_header_counts_one_trial_in_the_singular():
    rows = [Row("trial 0", "dense", "code=4", 0.9, 0.01, "complete", 1.0)]
    assert format_leaderboard(rows, {}, "accuracy", None).startswith(
        "Leaderboard (accuracy, 1 trial: 1 complete, 0 pruned, 0 failed)")


def test_columns_stay_aligned_under_a_long_metric_name():
    rows = [Row("trial 0", "dense", "code=4", 0.9, 0.01, "complete", 1.0)]
    header, first = format_leaderboard(rows, {}, "balanced_accuracy", None).splitlines()[1:3]
    assert header.index("sec") == first.index("1.0") + len("1.0") - len("sec")  # right-aligned over the seconds


def test_a_baseline_above_the_winners_interval_on_the_test_part_is_said_in_words():
    rows = [Row("trial 0", "dense", "code=4", 0.9, 0.01, "complete", 1.0)]
    export = {"trial": 0, "n_test_rows": 450, "test": {"score": 0.90, "low": 0.87, "high": 0.93},
              "baselines_test": {"raw": {"score": 0.96, "low": 0.95, "high": 0.98}}}
    note = "Note: raw features score above the winner's 95% interval on the test part: the search has not beaten them"
    assert note in format_leaderboard(rows, {}, "accuracy", export)
    export["baselines_test"]["raw"]["score"] = 0.92  # within the interval: no claim either way
    assert "Note:" not in format_leaderboard(rows, {}, "accuracy", export)


def test_the_winner_against_each_baseline_on_the_test_part_is_said_by_their_paired_interval():
    rows = [Row("trial 0", "dense", "code=4", 0.9, 0.01, "complete", 1.0)]
    export = {"trial": 0, "n_test_rows": 450, "test": {"score": 0.90, "low": 0.87, "high": 0.93},
              "baselines_test": {"raw": {"score": 0.92, "low": 0.89, "high": 0.95,
                                         "winner_minus": {"score": -0.02, "low": -0.035, "high": -0.006}},
                                 "pca": {"score": 0.88, "low": 0.85, "high": 0.91,
                                         "winner_minus": {"score": 0.02, "low": -0.001, "high": 0.04}}}}
    board = format_leaderboard(rows, {}, "accuracy", export)
    # every baseline's test score, then the differences, and raw's said in words: within the
    # winner's own interval, the paired one shows it lower
    assert "winner trial 0 accuracy 0.9000 [95% CI 0.8700, 0.9300]; raw 0.9200 [0.8900, 0.9500]; pca 0.8800" in board
    assert ("Winner minus each baseline on the same test rows (paired bootstrap, 95% CI): "
            "raw -0.0200 [-0.0350, -0.0060]; pca +0.0200 [-0.0010, +0.0400]") in board
    assert "Note: raw features score above the winner on the test part (their paired interval is below 0)" in board
    export["baselines_test"]["raw"]["winner_minus"] = {"score": 0.01, "low": 0.002, "high": 0.02}
    assert "Note:" not in format_leaderboard(rows, {}, "accuracy", export)  # pca's interval holds 0: no claim
    export["baselines_test"]["pca"]["winner_minus"]["low"] = 0.001
    assert "The winner scores above every baseline on the test part" in format_leaderboard(rows, {}, "accuracy", export)


def test_cv_scores_from_more_than_one_probe_are_said_so():
    """`auto` picks the probe by each machine's device: a GPU worker's trials and a CPU run's
    baselines were ranked side by side without a word."""
    rows = [Row("trial 0", "dense", "", 0.9, 0.01, "complete", 1.0, probe="device_softmax"),
            Row("trial 1", "dense", "", 0.8, 0.01, "complete", 1.0, probe="fast_logistic"),
            Row("trial 2", "dense", "", 0.8, 0.01, "complete", 1.0, probe="device_softmax")]
    baselines = {"raw": {"cv_mean": 0.85, "cv_std": 0.01, "probe": "fast_logistic"}}
    board = format_leaderboard(rows, baselines, "accuracy", None)
    assert ("Note: the CV scores come from more than one probe (trials: device_softmax 2, fast_logistic 1; "
            "baselines: fast_logistic)") in board
    assert "more than one probe" not in format_leaderboard(rows[1:2], baselines, "accuracy", None)
    assert "more than one probe" not in format_leaderboard(rows[::2], {"raw": {"cv_mean": 0.85, "cv_std": 0.01}},
                                                           "accuracy", None)  # baselines of an older study


def _complete(n):
    return [Row(f"trial {i}", "dense", "code=4", 0.5 + i / 100, 0.01, "complete", 1.0) for i in range(n)]


def test_top_shows_the_best_trials_and_every_baseline():
    board = format_leaderboard(_complete(12), {"raw": {"cv_mean": 0.3, "cv_std": 0.01}}, "accuracy", None, top=3)
    ranked = [line.split()[1:3] for line in board.splitlines()[2:] if line.split()[0].isdigit()]
    assert ranked == [["trial", "11"], ["trial", "10"], ["trial", "9"], ["baseline", "raw"]]


def test_five_failed_trials_are_listed_and_the_rest_counted():
    failed = [Row(f"trial {i}", "dense", "", None, None, "fail", note=f"reason {i}") for i in range(6)]
    board = format_leaderboard(_complete(1) + failed, {}, "accuracy", None)
    assert [line.split("failed: ")[1] for line in board.splitlines() if "failed: " in line] == [
        f"reason {i}" for i in range(5)]
    assert "      ... and 1 more failed trials" in board.splitlines()


EXPORT = {"trial": 0, "n_test_rows": 450, "test": {"score": 0.90, "low": 0.87, "high": 0.93}}
USE = {"time": "2026-12-03T04:43:05+0000", "trial": 3, "best": False, "metric": "accuracy", "score": 0.8,
       "low": 0.7, "high": 0.9, "export": "elsewhere"}


def test_the_refit_note_appears_only_when_trials_saw_fewer_rows_than_the_refit():
    rows = _complete(1)
    subsampled = format_leaderboard(rows, {}, "accuracy", {**EXPORT, "n_fit_rows": 1347, "n_trial_rows": 300})
    assert "(trials on 300 rows, winner refit on 1347)" in subsampled
    for seen in (1347, None):
        assert "refit on" not in format_leaderboard(rows, {}, "accuracy", {**EXPORT, "n_fit_rows": 1347,
                                                                             "n_trial_rows": seen})


def test_a_single_look_at_the_test_part_is_listed_where_the_study_has_no_export_of_its_own():
    """`export --trial N -o DIR` scored the test part once, and the study has no export: that
    look is listed; with the study's export it is the one its test line already shows."""
    rows = _complete(1)
    # (one look is not "each one is a look at it; only the first was blind", as a joiner's leaderboard said)
    once = "Held-out test part, used once (by an export this directory does not hold):"
    assert once in format_leaderboard(rows, {}, "accuracy", None, test_uses=[USE])
    assert once not in format_leaderboard(rows, {}, "accuracy", EXPORT, test_uses=[USE])
    assert "Uses of the held-out test part" not in format_leaderboard(rows, {}, "accuracy", EXPORT, test_uses=[USE])
    assert "used 2 times, listed below" in format_leaderboard(rows, {}, "accuracy", EXPORT, test_uses=[USE, USE])
