"""Dataset loading: the built-in digits, the UCR/UEA datasets bundled with aeon and CSV/NPY/NPZ
files, and the errors for bad files."""

import re

import numpy as np
import pandas as pd
import pytest

from encoderkit.data import load_dataset
from encoderkit.errors import DataError


def test_digits_is_an_image_dataset_flattened():
    data = load_dataset("digits")
    assert data.kind == "image"
    assert data.shape == (8, 8, 1)
    assert data.X.shape == (1797, 64)
    assert data.X.dtype == np.float64
    assert data.y.shape == (1797,)
    assert set(np.unique(data.y)) == set(range(10))


def test_csv_with_a_target_column(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=30), "b": rng.integers(0, 5, 30), "target": rng.integers(0, 2, 30)})
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(str(path))
    assert data.kind == "tabular"
    assert data.name == "table"
    assert data.shape == (2,)
    assert data.feature_names == ("a", "b")
    np.testing.assert_allclose(data.X, frame[["a", "b"]].to_numpy(dtype=float))
    np.testing.assert_array_equal(data.y, frame["target"].to_numpy())


def test_csv_with_a_named_target(tmp_path):
    frame = pd.DataFrame({"label": ["x", "y", "x", "y"], "f1": [1.0, 2.0, 3.0, 4.0], "target": [9, 8, 7, 6]})
    path = tmp_path / "named.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(str(path), target="label")
    assert list(data.y) == ["x", "y", "x", "y"]
    # the default target name is an ordinary feature when another target is chosen
    assert data.feature_names == ("f1", "target")
    np.testing.assert_array_equal(data.X, [[1, 9], [2, 8], [3, 7], [4, 6]])


def test_npy_label_in_the_last_column(tmp_path):
    array = np.column_stack([np.arange(10.0), np.arange(10.0) * 2, np.arange(10) % 2])
    path = tmp_path / "arr.npy"
    np.save(path, array)
    data = load_dataset(str(path))
    assert data.kind == "tabular" and data.shape == (2,)
    np.testing.assert_array_equal(data.X, array[:, :2])
    np.testing.assert_array_equal(data.y, array[:, 2])


def test_npy_label_at_an_explicit_column(tmp_path):
    array = np.column_stack([np.arange(10) % 3, np.arange(10.0), np.arange(10.0) + 100])
    path = tmp_path / "arr.npy"
    np.save(path, array)
    data = load_dataset(str(path), target="0")
    np.testing.assert_array_equal(data.y, array[:, 0])
    np.testing.assert_array_equal(data.X, array[:, 1:])


def test_npz_sequences_are_flattened_row_major(tmp_path):
    X = np.arange(6 * 4 * 3, dtype=float).reshape(6, 4, 3)
    y = np.array([0, 1, 0, 1, 0, 1])
    path = tmp_path / "seq.npz"
    np.savez(path, X=X, y=y)
    data = load_dataset(str(path))
    assert data.kind == "sequence"
    assert data.shape == (4, 3)
    assert data.X.shape == (6, 12)
    np.testing.assert_array_equal(data.X, X.reshape(6, 12))
    np.testing.assert_array_equal(data.y, y)


def test_npz_images_keep_their_shape(tmp_path):
    path = tmp_path / "img.npz"
    np.savez(path, X=np.zeros((3, 2, 2, 1)), labels=np.array([[0], [1], [2]]))
    data = load_dataset(str(path), target="labels")
    assert data.kind == "image" and data.shape == (2, 2, 1)
    assert data.X.shape == (3, 4)
    assert data.y.shape == (3,)


# --- errors ----------------------------------------------------------------------------------


def _write_csv(text):
    def write(path):
        path.write_text(text)
    return write


def _write_npz(**arrays):
    def write(path):
        np.savez(path, **arrays)
    return write


def _write_npy(array):
    def write(path):
        np.save(path, array)
    return write


def _nothing(path):
    pass


def _empty(path):
    path.write_bytes(b"")


BAD_FILES = [
    ("missing.csv", _nothing, None, ["no such file"]),
    ("empty.csv", _empty, None, ["file is empty"]),
    ("empty.npz", _empty, None, ["file is empty"]),
    ("data.txt", _write_csv("a,target\n1,0\n"), None, [".csv", ".npy", ".npz"]),
    ("data.csv", _write_csv("alpha,beta\n1,0\n2,1\n"), None, ["'target'", "alpha", "beta"]),
    ("data.csv", _write_csv("alpha,target\n1,0\n2,1\n"), "label", ["'label'", "alpha", "target"]),
    ("data.csv", _write_csv("a,b,target\n1,2,0\n2,oops,1\n"), None, ["'b'", "not numeric", "'oops'"]),
    ("data.csv", _write_csv("a,b,target\n1,,0\n2,3,1\n"), None, ["'b'", "nan"]),
    ("data.csv", _write_csv("a,b,target\n1,2,0\n-inf,3,1\n"), None, ["'a'", "inf"]),
    ("data.npy", _write_npy(np.array([[1.0, np.nan, 0], [1, 2, 1]])), None, ["column 1", "nan"]),
    ("data.npz", _write_npz(X=np.array([[1.0, np.inf], [1, 2]]), y=np.array([0, 1])), None, ["column 1", "inf"]),
    ("data.npz", _write_npz(A=np.zeros((3, 2)), y=np.zeros(3)), None, ["no features array 'X'", "A, y"]),
    ("data.npz", _write_npz(X=np.zeros((3, 2))), None, ["label array 'y'"]),
    ("data.npz", _write_npz(X=np.zeros((5, 2)), y=np.zeros(4)), None, ["5 feature rows", "4 labels"]),
    ("data.npz", _write_npz(X=np.zeros(5), y=np.zeros(5)), None, ["shape (5,)"]),
    ("data.npy", _write_npy(np.arange(5.0)), None, ["2-D", "(5,)"]),
    ("data.npy", _write_npy(np.zeros((4, 3))), "7", ["'7'", "3 columns"]),
    ("data.npy", _write_npy(np.zeros((4, 3))), "last", ["'last'"]),
    ("data.npy", _write_csv("not numpy at all"), None, ["data.npy: not NumPy data (no .npy or .npz header)"]),
]


@pytest.mark.parametrize(
    "name, write, target, expected",
    BAD_FILES,
    ids=[
        "missing", "empty-csv", "empty-npz", "unknown-extension", "no-target-column",
        "no-named-target", "non-numeric", "nan-csv", "inf-csv", "nan-npy", "inf-npz",
        "npz-without-X", "npz-without-y", "npz-count-mismatch", "npz-1d-X", "npy-1d",
        "npy-target-out-of-range", "npy-target-not-int", "npy-garbage",
    ],
)
def test_bad_files_raise_data_error_naming_the_file(tmp_path, name, write, target, expected):
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError) as info:
        load_dataset(str(path), target=target)
    message = str(info.value)
    assert str(path) in message, message
    for part in expected:
        assert part in message, message


def test_data_error_is_a_value_error():
    with pytest.raises(ValueError, match="not a built-in dataset"):
        load_dataset("mnist")


# --- built-in generated and packaged datasets ---------------------------------------------

def _write_idx(path, array):
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_and_keeps_the_official_test_part(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    dataset = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert dataset.X.shape == (40, 784) and dataset.kind == "image" and dataset.shape == (28, 28, 1)
    assert list(dataset.test_rows) == list(range(30, 40))
    with pytest.raises(DataError, match="n=20 is too small"):
        load_dataset("fashion-mnist:n=20", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="unknown option 'size'"):
        load_dataset("fashion-mnist:size=20", data_dir=str(tmp_path))


def test_fashion_mnist_missing_files_name_the_folder_and_the_package(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_truncated_idx_file_is_refused(tmp_path):
    import gzip

    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(tmp_path / f"{name}.gz", "wb") as handle:
            handle.write(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + b"\x01\x02")
    with pytest.raises(DataError, match="truncated"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_insurance_generator_matches_the_article():
    dataset = load_dataset("insurance:n=20000,seed=1")
    X = dataset.X.reshape(-1, 4, 3)
    assert dataset.kind == "sequence" and dataset.shape == (4, 3) and dataset.handcrafted == "insurance"
    assert abs(dataset.y.mean() - 0.25) < 0.02
    for cls, (p_pay, value, premium) in {0: (0.25, 100, 20), 1: (0.5, 200, 40)}.items():
        rows = X[dataset.y == cls]
        assert abs((rows[:, :, 0] > 0).mean() - p_pay) < 0.02
        assert abs(rows[:, :, 0][rows[:, :, 0] > 0].mean() - 10) < 0.6
        assert abs(rows[:, :, 1].mean() / value - 1) < 0.05
        assert abs(rows[:, :, 2].mean() / premium - 1) < 0.05
    np.testing.assert_array_equal(load_dataset("insurance:n=50,seed=1").X, load_dataset("insurance:n=50,seed=1").X)


def test_insurance_bayes_optimal_auroc_is_about_094():
    from sklearn.metrics import roc_auc_score

    from encoderkit.data import insurance_log_odds

    dataset = load_dataset("insurance:n=200000,seed=0")
    assert abs(roc_auc_score(dataset.y, insurance_log_odds(dataset.X)) - 0.9389) < 0.005


def test_the_bayes_score_is_linear_in_the_sufficient_statistics():
    from encoderkit.data import insurance_log_odds, insurance_sufficient_statistics

    X = load_dataset("insurance:n=500,seed=3").X
    stats = insurance_sufficient_statistics(X)
    design = np.column_stack([stats, np.ones(len(X))])
    coefficients, *_ = np.linalg.lstsq(design, insurance_log_odds(X), rcond=None)
    np.testing.assert_allclose(design @ coefficients, insurance_log_odds(X), atol=1e-8)
    np.testing.assert_allclose(coefficients[:3], [1 / 200, 1 / 40, np.log(3)], rtol=1e-6)


@pytest.mark.parametrize(
    "spec, message",
    [("insurance:n=ten", "must look like name=INTEGER"), ("insurance:n=5", "too small"),
     ("insurance:rows=5", "unknown option 'rows' (known: n, seed)"), ("digits:n=5", "unknown option 'n'")],
)
def test_bad_builtin_options_are_named(spec, message):
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(spec)


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it)")
def test_real_fashion_mnist_from_the_debian_package():
    dataset = load_dataset("fashion-mnist")
    assert dataset.X.shape == (70000, 784) and len(dataset.test_rows) == 10000
    assert set(np.unique(dataset.y)) == set(range(10)) and dataset.X.max() == 255
    small = load_dataset("fashion-mnist:n=1000,seed=1")
    assert small.X.shape == (11000, 784) and np.bincount(small.y[:1000]).tolist() == [100] * 10
    np.testing.assert_array_equal(small.X[1000:], dataset.X[60000:])


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_a_csv_with_commas_semicolons_or_tabs_reads_alike(tmp_path, sep):
    import pandas as pd

    frame = pd.DataFrame({"a": np.arange(10.0), "b": np.ones(10), "label": [0, 1] * 5})
    frame.to_csv(tmp_path / "data.csv", sep=sep, index=False)
    dataset = load_dataset(str(tmp_path / "data.csv"), "label")
    assert dataset.feature_names == ("a", "b") and dataset.X.shape == (10, 2) and not dataset.notes


@pytest.mark.parametrize("sep", [",", ";"])
def test_spaces_after_the_delimiters_are_not_part_of_names_or_values(tmp_path, sep):
    rows = [f"a{sep} b{sep} label"] + [f"{i}.5{sep} 1{sep} {i % 2}" for i in range(10)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    dataset = load_dataset(str(tmp_path / "data.csv"), "label")
    assert dataset.feature_names == ("a", "b") and dataset.X[3].tolist() == [3.5, 1.0]
    assert dataset.y.tolist() == [0, 1] * 5


def test_a_saved_dataframe_index_column_is_dropped_with_a_note(tmp_path):
    import pandas as pd

    pd.DataFrame({"a": np.arange(10.0), "label": [0, 1] * 5}).to_csv(tmp_path / "data.csv")  # index written
    dataset = load_dataset(str(tmp_path / "data.csv"), "label")
    assert dataset.feature_names == ("a",)
    assert dataset.notes == ("data.csv: dropped the unnamed first column (a saved DataFrame index)",)


def test_a_column_named_like_a_row_identifier_with_a_number_per_row_is_noted(tmp_path):
    """Rows sorted by class with an id column: the search would score the leak without a word."""
    import pandas as pd

    from encoderkit.data import from_memory

    frame = pd.DataFrame({"PassengerId": np.arange(1, 41), "customer_id": np.arange(40) * 7 % 41,
                          "grade": np.arange(40.0), "Id": [1, 2] * 20, "label": [0] * 20 + [1] * 20})
    frame.to_csv(tmp_path / "data.csv", index=False)
    notes = load_dataset(str(tmp_path / "data.csv"), "label").notes
    ending = "holds a different whole number in every row (a row identifier?); it is taken as a feature: drop it " \
        "if it names rows"
    # grade is not named like an identifier; Id repeats its values
    assert notes == (f"data.csv: column 'PassengerId' {ending}", f"data.csv: column 'customer_id' {ending}")
    assert from_memory(frame.drop(columns="label"), frame["label"]).notes == (
        f"X (DataFrame): column 'PassengerId' {ending}", f"X (DataFrame): column 'customer_id' {ending}")
    assert load_dataset(str(tmp_path / "data.csv"), "label").X.shape == (40, 4)  # kept as features


def test_a_csv_that_does_not_parse_names_the_delimiter_it_saw(tmp_path):
    (tmp_path / "data.csv").write_text("a;b;label\n1;2;0\n1;2;3;4;5\n")
    with pytest.raises(DataError, match="cannot be read as CSV with semicolons between values"):
        load_dataset(str(tmp_path / "data.csv"), "label")
    (tmp_path / "pipes.csv").write_text("a|b|label\n1|2|0\n")
    with pytest.raises(DataError, match=r"no target column 'label' \(columns, split at commas: a\|b\|label\)"):
        load_dataset(str(tmp_path / "pipes.csv"), "label")


def test_an_npz_may_name_its_columns_and_in_memory_data_round_trips_through_one(tmp_path):
    from encoderkit.data import content_hash, from_memory, save_npz

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.2, 0.3]})
    dataset = from_memory(frame, pd.Series(["x", "y", "x", "y"], name="label"))
    assert dataset.feature_names == ("a", "b") and dataset.target_name == "label" and dataset.y.dtype.kind == "U"
    assert dataset.notes == ()
    # A column named as the default label column, beside labels given as y: kept, with a note.
    leaky = from_memory(frame.assign(target=[0, 1, 0, 1]), pd.Series([0, 1, 0, 1]))
    assert leaky.feature_names == ("a", "b", "target") and "column 'target' is taken as a feature" in leaky.notes[0]
    # Column names that are not strings (pd.DataFrame(X)'s 0, 1, ...): taken by position, as in scikit-learn, and said
    numbered = from_memory(frame.set_axis([0, 1], axis=1), [0, 1, 0, 1])
    assert numbered.feature_names is None and numbered.notes == (
        "X (DataFrame): its column names are not all strings (0 is int), so, as in scikit-learn, the export takes "
        "columns by position, not by name; to keep the names: X.columns = X.columns.astype(str)",)
    save_npz(tmp_path / "d.npz", dataset)
    loaded = load_dataset(tmp_path / "d.npz")  # a PathLike
    assert loaded.feature_names == ("a", "b") and content_hash(loaded) == content_hash(dataset)
    # Names it cannot use (too few, or an object array that would need pickle) are ignored with a note.
    np.savez(tmp_path / "few.npz", X=np.ones((4, 2)), y=np.arange(4), feature_names=np.array(["a"]))
    np.savez(tmp_path / "objects.npz", X=np.ones((4, 2)), y=np.arange(4), feature_names=np.array(["a", "b"], dtype=object))
    for name, why in (("few.npz", "; 1 names for 2 columns)"), ("objects.npz", "; save it with dtype=str)")):
        loaded = load_dataset(tmp_path / name)
        assert loaded.feature_names is None and "'feature_names' ignored" in loaded.notes[0]
        assert loaded.notes[0].endswith(why)  # the hint named dtype=str for names that were strings
    (tmp_path / "text.npz").write_text("a,b,label\n1,2,0\n")  # np.load takes it for a pickle, and said allow_pickle
    with pytest.raises(DataError, match=r"text.npz: not NumPy data \(no .npy or .npz header\): damaged, or another"):
        load_dataset(tmp_path / "text.npz")


def test_in_memory_frames_name_columns_as_scikit_learn_does_and_refuse_what_is_not_numeric():
    from encoderkit.data import from_memory

    assert from_memory(pd.DataFrame(np.ones((6, 3))), [0, 1] * 3).feature_names is None  # RangeIndex columns
    dates = pd.DataFrame({"a": [1.0] * 6, "when": pd.date_range("2026-01-01", periods=6)})
    with pytest.raises(DataError, match=r"column 'when' holds dates, durations or intervals \(datetime64"):
        from_memory(dates, [0, 1] * 3)
    months = dates.assign(when=pd.period_range("2026-01", periods=6, freq="M"))  # taken as months since 1970
    with pytest.raises(DataError, match=r"column 'when' holds dates, durations or intervals \(period\[M\]\)"):
        from_memory(months, [0, 1] * 3)
    missing = pd.DataFrame({"a": pd.array([1, pd.NA, 3, 4, 5, 6], dtype="Int64")})
    with pytest.raises(DataError, match=r"'a' has nan in row 1"):
        from_memory(missing, [0, 1] * 3)


def test_in_memory_labels_of_mixed_number_types_are_the_classes_that_numpy_and_scikit_learn_see():
    from encoderkit.data import from_memory

    X = np.ones((8, 2))
    mixed = from_memory(X, np.array([0, 1, 0.0, 1.0] * 2, dtype=object))  # as text: '0', '0.0', '1', '1.0'
    assert np.unique(mixed.y).tolist() == [0, 1]
    assert np.unique(from_memory(X, np.array([True, 1, False, 0] * 2, dtype=object)).y).tolist() == [0, 1]
    assert from_memory(X, np.array(["a", "b"] * 4, dtype=object)).y.dtype.kind == "U"  # text stays text
    with pytest.raises(DataError, match=r"^y: labels mix numbers \(1\) and other values \('a'\); give them one type"):
        from_memory(X, np.array(["a", 1] * 4, dtype=object))


def test_ucr_datasets_keep_the_archives_split_and_their_channels():
    """`ucr:NAME`: aeon's bundled UCR/UEA data, the official training series as the search part
    and the official test series as the test part; (n, channels, steps) becomes (steps, channels)
    samples of kind "sequence", univariate series (steps, 1)."""
    pytest.importorskip("aeon")
    from aeon.datasets import load_classification

    from search.problem import make_problem

    unit = load_dataset("ucr:UnitTest")  # aeon's tiny set: train (20, 1, 24), test (22, 1, 24)
    train_X, train_y = load_classification("UnitTest", split="train")
    test_X, test_y = load_classification("UnitTest", split="test")
    assert (unit.name, unit.kind, unit.shape, unit.X.shape, unit.X.dtype) == ("ucr-UnitTest", "sequence", (24, 1), (42, 24), np.float64)
    problem = make_problem(unit, folds=3)
    assert list(problem.search_rows) == list(range(20)) and list(problem.test_rows) == list(range(20, 42))
    np.testing.assert_array_equal(problem.X, train_X[:, 0, :])
    np.testing.assert_array_equal(problem.y, train_y)
    np.testing.assert_array_equal(problem.test_part()[1], test_y)

    motions = load_dataset("ucr:basicmotions")  # names match in any case
    aeon_X, _ = load_classification("BasicMotions", split="train")  # (40, 6, 100)
    assert motions.name == "ucr-BasicMotions" and motions.shape == (100, 6) and len(motions.test_rows) == 40
    np.testing.assert_array_equal(motions.X[:40].reshape(40, 100, 6), aeon_X.transpose(0, 2, 1))


def test_ucr_names_it_cannot_load_are_refused_in_one_line():
    pytest.importorskip("aeon")
    from encoderkit.data import ucr_names

    assert {"GunPoint", "ArrowHead", "BasicMotions", "UnitTest", "JapaneseVowels_eq"} <= set(ucr_names())
    with pytest.raises(DataError, match=r"^ucr:GunPont: no bundled UCR/UEA dataset 'GunPont' \(bundled with aeon [\d.]+: ACSF1, ArrowHead, .*GunPoint") as caught:
        load_dataset("ucr:GunPont")
    # the names it lists load (JapaneseVowels, of unequal lengths, was listed, then refused)
    assert "JapaneseVowels_eq" in str(caught.value) and "JapaneseVowels," not in str(caught.value)
    with pytest.raises(DataError, match=r"^ucr:JapaneseVowels: series of unequal length \(7 to 29 steps\), the search needs one "
                                        r"length: use ucr:JapaneseVowels_eq, the archive's equal-length version \(25 steps\)$"):
        load_dataset("ucr:JapaneseVowels")
    assert load_dataset("ucr:JapaneseVowels_eq").shape == (25, 12)


def test_ucr_without_aeon_says_to_run_make_setup(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "aeon", None)  # `import aeon...` raises ImportError
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(DataError, match=r"^ucr:GunPoint: the UCR/UEA datasets ship in aeon's wheel, and aeon is not "
                                        r"installed here: run `make setup` \(it installs aeon\)$"):
        load_dataset("ucr:GunPoint")
