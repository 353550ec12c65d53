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
