"""Datasets with a data kind: sklearn's embedded digits, Fashion-MNIST (Debian's
`dataset-fashion-mnist`), the article's synthetic insurance data, the UCR/UEA time series
classification datasets bundled in aeon's wheel (`ucr:NAME`), and CSV/NPY/NPZ files.

Every loader returns a `Dataset` with 2-D float features (images and sequences flattened
row-major, their per-sample shape kept in `shape`) and 1-D labels. Anything unusable raises
`DataError` with the file, column and value named.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from encoderkit.errors import DataError

KINDS = ("tabular", "image", "sequence")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the encoders compute in float32
# The layouts X may take, as errors name them
ROWS_OF_SAMPLES = "one row per sample (2-D tables, 3-D sequences (n, T, F) or 4-D images (n, H, W, C))"
BUILTIN = {"digits": (), "fashion-mnist": ("n", "seed"), "insurance": ("n", "seed")}  # name -> options
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    X: np.ndarray
    y: np.ndarray
    kind: str
    shape: tuple  # shape of one sample before flattening
    feature_names: tuple | None = None
    test_rows: np.ndarray | None = None  # a predefined test part (e.g. Fashion-MNIST's 10k)
    handcrafted: str | None = None  # name of a handcrafted-features baseline, if one is defined
    target_name: str | None = None  # the label column or array, as the file names it
    notes: tuple = ()  # what loading changed, for the user (e.g. a dropped index column)
    source: str | None = None  # the file (or "X (DataFrame)") the rows came from, as errors name it


def load_dataset(data="digits", target: str | None = None, data_dir: str | None = None) -> Dataset:
    """Loads a built-in dataset by name, or a .csv/.npy/.npz file by path (str or PathLike).

    Built-ins take options after a colon: `insurance:n=1000,seed=3`; `ucr:NAME` names a
    UCR/UEA dataset bundled with aeon (`ucr:GunPoint`)."""
    import os

    if not isinstance(data, (str, os.PathLike)):
        raise DataError(f"data={type(data).__name__}: expected a dataset name or a file path "
                        "(arrays and DataFrames: encoderkit.data.from_memory)")
    data = os.fspath(data)
    name, _, options = data.partition(":")
    if name == UCR:
        return _ucr(data, options)
    if name in BUILTIN:
        builtin = {"digits": _digits, "fashion-mnist": _fashion_mnist, "insurance": _insurance}[name]
        return builtin(data_dir=data_dir, **_options(data, options, BUILTIN[name]))
    path = Path(data)
    if path.suffix.lower() not in LOADERS:
        raise DataError(
            f"{data}: not a built-in dataset ({', '.join(BUILTIN)}, {UCR}:NAME) "
            "nor a .csv, .npy or .npz file"
        )
    if not path.is_file():
        raise DataError(f"{data}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{data}: file is empty")
    dataset = LOADERS[path.suffix.lower()](path, target)
    _check_finite(dataset, path)
    return dataset


def is_builtin(data) -> bool:
    """Whether `data` names a built-in dataset (`digits`, `fashion-mnist:n=1000`, `ucr:NAME`)."""
    import os

    return os.fspath(data).partition(":")[0] in (*BUILTIN, UCR)


def is_file_name(data) -> bool:
    """Whether `data` names a file to load (else a built-in dataset)."""
    import os

    return Path(os.fspath(data)).suffix.lower() in LOADERS


def _options(data, text, known) -> dict:
    options = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in known:
            raise DataError(f"{data}: unknown option {key.strip()!r} (known: {', '.join(known) or 'none'})")
        if not value.strip().isdigit() or int(value) >= 2**32:  # counts and seeds: 0 or more
            raise DataError(f"{data}: option {item!r} must look like name=INTEGER (0 to 2**32 - 1)")
        options[key.strip()] = int(value)
    return options


def _digits(data_dir=None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Dataset("digits", bunch.data.astype(np.float64), bunch.target, "image", (8, 8, 1))


def _fashion_mnist(data_dir=None, n=None, seed=0) -> Dataset:
    """The 60k training images then the 10k test images (kept as the test part), as float32
    pixels 0-255; reads the gzipped IDX files of Debian's dataset-fashion-mnist.
    `n` keeps a stratified, seeded subsample of the training images (for CPU budgets); the
    test part stays the official 10k."""
    folders = [Path(data_dir)] if data_dir else [Path(p) for p in FASHION_MNIST_DIRS]
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    folder = next((f for f in folders if all(_idx_path(f, n) for n in names)), None)
    if folder is None:
        raise DataError(
            f"fashion-mnist: IDX files not found in {', '.join(map(str, folders))} "
            "(install the Debian package dataset-fashion-mnist, or pass --data-dir)"
        )
    train_x, train_y, test_x, test_y = (_read_idx(_idx_path(folder, name)) for name in names)
    if n is not None and n < len(train_y):
        from sklearn.model_selection import train_test_split

        if n < 10 * len(np.unique(train_y)):
            raise DataError(f"fashion-mnist: n={n} is too small (at least 10 images per class)")
        keep, _ = train_test_split(np.arange(len(train_y)), train_size=n, stratify=train_y, random_state=seed)
        train_x, train_y = train_x[np.sort(keep)], train_y[np.sort(keep)]
    X = np.concatenate([train_x, test_x]).reshape(-1, 28 * 28).astype(np.float32)
    y = np.concatenate([train_y, test_y]).astype(np.int64)
    name = "fashion-mnist" if n is None else f"fashion-mnist-n{len(train_y)}-s{seed}"
    return Dataset(name, X, y, "image", (28, 28, 1), test_rows=np.arange(len(train_y), len(y)))


def _idx_path(folder: Path, name: str):
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def _read_idx(path: Path) -> np.ndarray:
    """IDX format: magic (2 zero bytes, dtype code, ndim), big-endian dims, then the data."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated ({data.size} values, header says {int(np.prod(dims))})")
    return data.reshape(tuple(int(d) for d in dims))


# The article's synthetic insurance data: per class (0, 1) the chance of a payment in a period,
# and the means of the payment, insured value and premium (exponential).
INSURANCE = {"positive_rate": 0.25, "p_payment": (0.25, 0.5), "payment": 10.0, "value": (100.0, 200.0), "premium": (20.0, 40.0)}
INSURANCE_PERIODS = 4


def _insurance(data_dir=None, n=1000, seed=0) -> Dataset:
    """N policies over 4 periods, columns period-major [payment, insured value, premium] x 4,
    a 4 x 3 sequence. The label comes first, Bernoulli(0.25); each period is drawn
    independently given the class."""
    if n < 20:
        raise DataError(f"insurance: n={n} is too small (at least 20)")
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < INSURANCE["positive_rate"]).astype(np.int64)
    X = np.empty((n, INSURANCE_PERIODS, 3))
    p_pay = np.where(y == 1, INSURANCE["p_payment"][1], INSURANCE["p_payment"][0])
    for t in range(INSURANCE_PERIODS):
        X[:, t, 0] = (rng.random(n) < p_pay) * rng.exponential(INSURANCE["payment"], n)
        X[:, t, 1] = rng.exponential(np.where(y == 1, INSURANCE["value"][1], INSURANCE["value"][0]))
        X[:, t, 2] = rng.exponential(np.where(y == 1, INSURANCE["premium"][1], INSURANCE["premium"][0]))
    return Dataset(f"insurance-n{n}-s{seed}", X.reshape(n, -1), y, "sequence", (INSURANCE_PERIODS, 3), handcrafted="insurance")


def insurance_log_odds(X) -> np.ndarray:
    """The Bayes-optimal score of the generator: log p(x | 1) - log p(x | 0). Its AUROC is the
    best any method can reach on this data."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), INSURANCE_PERIODS, 3)
    log_odds = np.zeros(len(X))
    for cls, sign in ((1, 1.0), (0, -1.0)):
        p, mean_pay = INSURANCE["p_payment"][cls], INSURANCE["payment"]
        paid = X[:, :, 0] > 0
        pay = np.where(paid, np.log(p) - np.log(mean_pay) - X[:, :, 0] / mean_pay, np.log1p(-p))
        value = -np.log(INSURANCE["value"][cls]) - X[:, :, 1] / INSURANCE["value"][cls]
        premium = -np.log(INSURANCE["premium"][cls]) - X[:, :, 2] / INSURANCE["premium"][cls]
        log_odds += sign * (pay + value + premium).sum(axis=1)
    return log_odds + np.log(INSURANCE["positive_rate"] / (1 - INSURANCE["positive_rate"]))


def insurance_sufficient_statistics(X) -> np.ndarray:
    """The three features the Bayes-optimal score is linear in: total insured value, total
    premium, and the number of periods with a payment (payment amounts have the same
    distribution in both classes, only their frequency differs). The best features an
    encoder could find; a probe trained on them shows what the probe itself can reach."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), INSURANCE_PERIODS, 3)
    return np.column_stack([X[:, :, 1].sum(axis=1), X[:, :, 2].sum(axis=1), (X[:, :, 0] > 0).sum(axis=1)])


# The UCR/UEA archive's classification datasets that aeon ships inside its wheel (BSD; GunPoint,
# ArrowHead, BasicMotions, ...), each with the archive's official train/test split.
UCR = "ucr"


def ucr_names() -> tuple:
    """The bundled UCR/UEA classification datasets `ucr:NAME` loads (needs aeon)."""
    return tuple(sorted(_ucr_files()))


def _ucr_files() -> dict:
    """Name -> (train file, test file) for every classification problem in aeon's bundled data
    folder: `NAME/NAME_TRAIN.ts` and `NAME/NAME_TEST.ts`, and the archive's equal-length
    versions of unequal-length problems, `NAME/NAME_eq_TRAIN.ts` (as `NAME_eq`). Only this
    folder: aeon's own loader downloads names it lacks, and a search must not."""
    import aeon.datasets

    found = {}
    for folder in sorted((Path(aeon.datasets.__file__).parent / "data").iterdir()):
        for stem in (folder.name, f"{folder.name}_eq"):
            train, test = folder / f"{stem}_TRAIN.ts", folder / f"{stem}_TEST.ts"
            if train.is_file() and test.is_file() and _ts_has_class_labels(train):
                found[stem] = (train, test)
    return found


def _ts_has_class_labels(path: Path) -> bool:
    """Whether a .ts file's header declares class labels (the others are regression problems)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            words = line.strip().lower().split()
            if words[:1] == ["@data"]:
                return False
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def _ucr(data, name) -> Dataset:
    """A bundled UCR/UEA dataset: its official training series are the search part, its official
    test series the test part (as Fashion-MNIST's 10k test images). aeon gives (n, channels,
    steps); a sample here is (steps, channels), univariate series (steps, 1), of kind
    "sequence". Unequal lengths are refused, naming the archive's equal-length version where
    aeon ships one: padding or resampling changes the data, so the user chooses it by name."""
    try:
        import aeon.datasets
    except ImportError as exc:  # missing, or broken (e.g. a numba built for another numpy)
        missing = (exc.name or "").split(".")[0] == "aeon"
        why = "is not installed here" if missing else f"does not import ({_first_line(exc)})"
        raise DataError(f"{data}: the UCR/UEA datasets ship in aeon's wheel, and aeon {why}: "
                        "run `make setup` (it installs aeon)") from None
    files = _ucr_files()
    known = {key.lower(): key for key in files}
    if name.lower() not in known:
        what = f"no bundled UCR/UEA dataset {name!r}" if name else "name a dataset as ucr:NAME"
        usable = [key for key in sorted(files) if f"{key}_eq" not in files]  # (unequal lengths: refused)
        raise DataError(f"{data}: {what} (bundled with aeon {_version('aeon')}: {', '.join(usable)})")
    name = known[name.lower()]
    train_X, train_y = aeon.datasets.load_from_ts_file(str(files[name][0]))
    test_X, test_y = aeon.datasets.load_from_ts_file(str(files[name][1]))
    lengths = {series.shape[-1] for part in (train_X, test_X) for series in part}
    if len(lengths) > 1:
        hint = (f": use ucr:{name}_eq, the archive's equal-length version ({_ucr_length(files[name + '_eq'][0])} steps)"
                if f"{name}_eq" in files else "")
        raise DataError(f"{data}: series of unequal length ({min(lengths)} to {max(lengths)} steps), "
                        f"the search needs one length{hint}")
    X = np.concatenate([np.asarray(train_X), np.asarray(test_X)]).transpose(0, 2, 1)  # (n, steps, channels)
    y = np.concatenate([np.asarray(train_y), np.asarray(test_y)])
    dataset = Dataset(f"ucr-{name}", X.reshape(len(X), -1).astype(np.float64), y, "sequence", tuple(X.shape[1:]),
                      test_rows=np.arange(len(train_y), len(y)), target_name="class")
    dataset = _checked(dataset, data)
    _check_finite(dataset, data)
    return dataset


def _ucr_length(path: Path) -> int:
    import aeon.datasets

    return int(np.asarray(aeon.datasets.load_from_ts_file(str(path))[0]).shape[-1])


def _version(package) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def _csv(path: Path, target: str | None) -> Dataset:
    import pandas as pd

    delimiter = _sniff_delimiter(path)
    try:
        frame = pd.read_csv(path, sep=delimiter, skipinitialspace=True)  # "a, b, target": names without the spaces
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as CSV with {DELIMITERS[delimiter]}s between values "
                        f"({_first_line(exc)})") from None
    _refuse_repeated_names(path, delimiter)
    notes = ()
    if len(frame.columns) and str(frame.columns[0]).startswith("Unnamed: 0"):
        # pandas' to_csv writes the index as a nameless first column; it is no feature
        frame = frame.drop(columns=frame.columns[0])
        notes = (f"{path.name}: dropped the unnamed first column (a saved DataFrame index)",)
    target = target or "target"
    if target not in frame.columns:
        columns = list(map(str, frame.columns))
        near = [c for c in columns if c.strip().lower() == target.strip().lower()] or \
            difflib.get_close_matches(target, columns, n=1, cutoff=0.8)
        more = f" and {len(columns) - 20} more" if len(columns) > 20 else ""
        raise DataError(
            f"{path}: no target column {target!r}{f' (did you mean {near[0]!r}?)' if near else ''} (columns, "
            f"split at {DELIMITERS[delimiter]}s: {', '.join(columns[:20])}{more})"
        )
    y = frame.pop(target).to_numpy()
    X = _numeric_frame(frame, path)
    notes = (*notes, *identifier_notes(path.name, frame.columns, X))
    return _checked(Dataset(path.stem, X, y, "tabular", (X.shape[1],), tuple(map(str, frame.columns)),
                            target_name=target, notes=notes), path)


# Names of row identifiers: id, index, row_number, customer_id, PassengerId, user ID, ...
IDENTIFIER_NAME = re.compile(r"(?i:id|idx|index|row|row[ _-]?(?:id|number|no))|.*(?:[ _-](?i:id|idx)|[a-z]I[dD])")


def identifier_notes(where, names, X) -> tuple:
    """A note for each column named like a row identifier that holds a different whole number
    in every row: as a feature it is noise, or it leaks the label where rows are sorted by class
    (the search would score that leak). Said, not dropped: the name may mislead."""
    notes = []
    for index, name in enumerate(names):
        column = X[:, index]
        if (isinstance(name, str) and IDENTIFIER_NAME.fullmatch(name.strip()) and len(column) >= 20
                and np.all(column == np.round(column)) and len(np.unique(column)) == len(column)):
            notes.append(f"{where}: column {name!r} holds a different whole number in every row (a row identifier?); "
                         "it is taken as a feature: drop it if it names rows")
    return tuple(notes)


def _refuse_repeated_names(path: Path, delimiter: str):
    """pandas renames a repeated column ('a', 'a.1'), which would make a feature of a name the
    file does not hold, or a second 'target' a feature; the header is read as written instead."""
    import pandas as pd

    header = pd.read_csv(path, sep=delimiter, skipinitialspace=True, header=None, nrows=1, dtype=str).iloc[0]
    names = [str(name) for name in header if not pd.isna(name)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: column names repeat in its header ({', '.join(map(repr, repeated))})")


def _numeric_frame(frame, where) -> np.ndarray:
    """A DataFrame's values as float64, or `DataError` naming the first non-numeric cell."""
    columns = [_numeric_column(frame[column], column, where) for column in frame.columns]
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def _numeric_column(values, column, where) -> np.ndarray:
    import pandas as pd

    if values.dtype.kind in "mM" or isinstance(values.dtype, (pd.PeriodDtype, pd.IntervalDtype)):
        # pd.to_numeric would give nanoseconds, or a period's ordinal (months since 1970)
        raise DataError(f"{where}: column {column!r} holds dates, durations or intervals ({values.dtype}); "
                        "convert it to numbers first")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.dtype.kind == "c":  # a cast would drop the imaginary parts with only a warning
        raise DataError(f"{where}: column {column!r} holds complex numbers ({values.dtype}); pass real features")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        # (categories: the encoders take numbers only, and which encoding suits is the user's call)
        raise DataError(f"{where}: column {column!r} is not numeric ({row_name(where, row)} has {values.iloc[row]!r}); "
                        "encode it as numbers (e.g. one-hot, pandas.get_dummies) or drop it")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _repeated(names) -> str:
    return ", ".join(sorted({repr(name) for name in names if names.count(name) > 1}))


def check_frame(frame, where="X"):
    """The DataFrame with numbers in every column, or one line naming the column that holds no
    feature: repeated names, dates, complex numbers, text (scikit-learn's own check raised
    numpy's or narwhals' errors, or "could not convert string to float" without the column).
    A numeric frame is returned as it is, at the cost of a look at its dtypes; others (text
    that reads as numbers, a nullable string column with NA) as float64 columns."""
    names = list(frame.columns)
    if len(set(names)) != len(names):
        raise DataError(f"{where}: column names repeat ({_repeated(names)})")
    if all(dtype.kind in "biuf" for dtype in frame.dtypes):
        return frame
    import pandas as pd

    return pd.DataFrame({index: _numeric_column(frame.iloc[:, index], column, where)
                         for index, column in enumerate(names)}, index=frame.index).set_axis(frame.columns, axis=1)


def _sniff_delimiter(path: Path) -> str:
    """Comma, semicolon or tab: whichever the header line holds most of (comma if none)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _npy(path: Path, target: str | None) -> Dataset:
    array = _load_numpy(path)
    if array.ndim != 2 or array.shape[1] < 2:
        raise DataError(f"{path}: expected a 2-D array with a label column, got shape {array.shape}")
    try:
        column = int(target) if target is not None else array.shape[1] - 1
        y = array[:, column]
    except (ValueError, IndexError):
        raise DataError(
            f"{path}: target {target!r} is not a column index of an array with {array.shape[1]} columns"
        ) from None
    X = _numeric(np.delete(array, column, axis=1), path, "features")
    return _checked(Dataset(path.stem, X, y, "tabular", (X.shape[1],), target_name=str(column)), path)


def _npz(path: Path, target: str | None) -> Dataset:
    archive = _load_numpy(path)
    target = target or "y"
    features = next((k for k in ("X", "x", "data") if k in archive.files), None)
    if features is None or target not in archive.files:
        missing = "features array 'X'" if features is None else f"label array {target!r}"
        raise DataError(f"{path}: no {missing} (arrays: {', '.join(archive.files)})")
    X, y = (_npz_array(archive, path, key) for key in (features, target))
    names, notes = _feature_names(archive, path, X)
    if not 2 <= X.ndim <= 4:
        raise DataError(f"{path}: {features!r} must have {ROWS_OF_SAMPLES}, got shape {X.shape}")
    if y.ndim > 1 and y.shape[1:] != (1,) * (y.ndim - 1):  # np.ravel would make one label per cell
        raise DataError(f"{path}: label array {target!r} must hold one label per row, got shape {y.shape}")
    shape = tuple(X.shape[1:])
    refuse_channels_first(shape, f"{path}: {features!r}", len(X))
    X = _numeric(_as_rows(X), path, features)
    return _checked(Dataset(path.stem, X, np.ravel(y), kind_of(shape), shape, names, target_name=target,
                            notes=notes), path)


def _npz_array(archive, path, key):
    """One array of an .npz archive (read on access: an object array fails only here)."""
    try:
        return archive[key]
    except (ValueError, OSError) as exc:
        why = _first_line(exc)
        if "allow_pickle" in why:  # (what NumPy says of every object array)
            why = ("an object array, e.g. series of unequal lengths, which needs pickle to read; store one numeric "
                   "array: pad or resample series to one length")
        raise DataError(f"{path}: array {key!r} cannot be read ({why})") from None


def refuse_channels_first(sample_shape, where, n):
    """Series of one step and T channels are aeon's and sktime's (n, channels, steps) layout of
    univariate series: searched as given, each "sequence" was one step long."""
    if len(sample_shape) == 2 and sample_shape[0] == 1 and sample_shape[1] > 1:
        steps = sample_shape[1]
        raise DataError(f"{where}: shape ({n}, 1, {steps}) is series of 1 step with {steps} channels; aeon and "
                        f"sktime store series as (n, channels, steps): pass X.transpose(0, 2, 1) (shape ({n}, "
                        f"{steps}, 1)), or X.reshape({n}, -1) for a table")


LOADERS = {".csv": _csv, ".npy": _npy, ".npz": _npz}  # data files by suffix


def kind_of(sample_shape) -> str:
    """The data kind a sample's shape implies: (F,) tabular, (T, F) sequence, (H, W, C) image."""
    return {1: "tabular", 2: "sequence", 3: "image"}.get(len(sample_shape), "tabular")


def _feature_names(archive, path, X):
    """An NPZ may name the columns of a 2-D X in a string array `feature_names`; anything
    else under that name (object arrays need pickle; per-step names of a 3-D X) is left
    alone with a note, as files from before this was read are."""
    if "feature_names" not in archive.files:
        return None, ()
    try:
        names = archive["feature_names"]
    except ValueError:  # an object array: reading it would run pickle
        names = None
    if names is None or names.dtype.kind != "U" or names.ndim != 1:
        why = "save it with dtype=str"
    elif X.ndim != 2:
        why = f"X is {X.ndim}-D"
    elif len(names) != X.shape[1]:
        why = f"{len(names)} names for {X.shape[1]} columns"
    else:
        return tuple(map(str, names)), ()
    return None, (f"{path.name}: 'feature_names' ignored (used only as a string array with one name per "
                  f"column of a 2-D X; {why})",)


# In-memory data: what `search.run(X, y)` and `EncoderSearch.fit` take.
IN_MEMORY = "memory:"  # how a study's settings name in-memory data: memory:<content hash>


def from_memory(X, y=None, target: str | None = None) -> Dataset:
    """A Dataset from arrays or a DataFrame, checked like a file: a NumPy array (2-D
    tabular, 3-D sequences (n, T, F), 4-D images (n, H, W, C): the shape sets the kind, as
    for NPZ files) with labels `y`, or a pandas DataFrame whose columns are the features
    (their names travel with the export) with labels in `y` or in its column `target`."""
    import pandas as pd

    notes = ()
    if isinstance(y, str):  # search.run(frame, "churn")
        raise DataError(f"y={y!r}: expected one label per row; to take the labels from a column of X, "
                        f"pass target={y!r}")
    if isinstance(X, pd.DataFrame):
        where, name = "X (DataFrame)", "dataframe"
        if y is None:
            target = target or "target"
            if target not in X.columns:
                raise DataError(f"{where}: no labels: pass y, or target= one of its columns "
                                f"(no column {target!r}; columns: {', '.join(map(str, X.columns[:20]))})")
            y, X = X[target], X.drop(columns=[target])
        elif target is not None:
            raise DataError(f"target={target!r}: give labels either as y or as a column named by target=, not both")
        elif _reordered(X, y):  # taken by position (as scikit-learn does), each label went to another row
            align = ("y.loc[X.index]" if X.index.is_unique else
                     "the rows lined up (X.index repeats labels, so y.loc[X.index] would repeat rows)")
            raise DataError("y: its index and X's (DataFrame) hold the same labels in another order; labels are "
                            f"taken by position, as in scikit-learn: pass {align} if the indexes name the "
                            "rows, y.to_numpy() if the order does")
        elif "target" in X.columns:  # most likely the labels again, which would leak into the codes
            notes = ("X (DataFrame): its column 'target' is taken as a feature, since y gives the labels; "
                     "drop it if it holds them",)
        names = tuple(map(str, X.columns))
        if len(set(names)) != len(names):
            raise DataError(f"{where}: column names repeat ({_repeated(names)})")
        features, shape = _numeric_frame(X, where), (len(names),)
        notes = (*notes, *identifier_notes(where, X.columns, features))
        if not names_features(X):
            names = None
            first = next(c for c in X.columns if not isinstance(c, str))
            if any(isinstance(c, str) for c in X.columns):  # scikit-learn refuses these: so would the export
                text = next(c for c in X.columns if isinstance(c, str))
                raise DataError(f"{where}: its column names mix strings ({text!r}) and other types ({first!r} is "
                                f"{type(first).__name__}), which scikit-learn refuses; give them one type: "
                                "X.columns = X.columns.astype(str)")
            notes = (*notes, f"{where}: its column names are not all strings ({first} is {type(first).__name__}), "
                             "so, as in scikit-learn, the export takes columns by position, not by name; to keep "
                             "the names: X.columns = X.columns.astype(str)")
    else:
        where, name, names = "X", "arrays", None
        if isinstance(X, (dict, set)) or np.isscalar(X):
            raise DataError(f"X: expected an array or a DataFrame, got {type(X).__name__}")
        if _is_sparse(X):  # np.asarray would make a 0-d object array of it
            raise DataError(f"X: a sparse matrix ({type(X).__name__}); autoencoders take dense features: pass X.toarray()")
        if target is not None:
            raise DataError(f"target={target!r}: names a DataFrame column; X is an array, give its labels as y")
        if y is None:
            raise DataError("y=None: a search needs labels; pass y (one label per row of X)")
        try:
            array = np.asarray(X)
        except ValueError:  # rows of different lengths
            raise DataError(unequal_samples(X)) from None
        if not 2 <= array.ndim <= 4:  # a 5-D array was searched as a table of its flattened values
            raise DataError(f"X: must have {ROWS_OF_SAMPLES}, got shape {array.shape}")
        shape = tuple(array.shape[1:])
        refuse_channels_first(shape, where, len(array))
        features = _numeric(_as_rows(array), where, "values")  # float64, as from files
    labels_at = where if target is not None else "y"  # where label errors point: a column of X, or y
    target_name = (getattr(y, "name", None) if target is None else target) or "y"
    labels = _labels(y, labels_at)
    if labels.ndim != 1:
        raise DataError(f"y: must be one label per row, got shape {labels.shape}")
    dataset = Dataset(name, features, labels, kind_of(shape), shape, names,
                      target_name=str(target_name), notes=notes)
    dataset = _checked(dataset, where, labels_at)
    _check_finite(dataset, where)
    return dataset


def _reordered(X, y) -> bool:
    """y (a Series) labels the same rows as the DataFrame X by its index, in another order.
    Other indexes (a y built from a list) are taken by position, as scikit-learn takes them."""
    import pandas as pd

    if not isinstance(y, (pd.Series, pd.DataFrame)):  # (a list's `index` is its method)
        return False
    index = y.index
    if index.equals(X.index) or len(index) != len(X.index):
        return False
    if index.is_unique and X.index.is_unique:
        return bool(index.isin(X.index).all())
    try:  # repeated labels (two rows per customer): the same labels, as many times each
        return index.sort_values().equals(X.index.sort_values())
    except TypeError:  # labels of types that do not sort together
        return False


def _is_sparse(X) -> bool:
    import sys

    sparse = sys.modules.get("scipy.sparse")  # no SciPy imported: X cannot be one of its matrices
    return sparse is not None and sparse.issparse(X)


def _labels(y, where="y") -> np.ndarray:
    """Labels as a plain array a study can store without pickle: text labels become strings,
    numbers of mixed types (0 and 0.0, True and 1) numbers, one class where they are equal."""
    from numbers import Number

    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.ravel()
    if labels.dtype == object and labels.ndim == 1:
        import pandas as pd

        if pd.isna(labels).any():
            return labels  # _check_labels names the missing ones
        is_number = np.fromiter((isinstance(v, Number) for v in labels), bool, len(labels))
        if is_number.all():  # as str, 0 and 0.0 were two classes; np.unique and scikit-learn see one
            numeric = np.asarray(labels.tolist())
            return numeric if numeric.dtype != object else labels.astype(str)
        if is_number.any():  # scikit-learn refuses these too
            number, text = labels[np.argmax(is_number)], labels[np.argmin(is_number)]
            raise DataError(f"{where}: labels mix numbers ({number!r}) and other values ({text!r}); "
                            "give them one type, e.g. y.astype(str)")
        labels = labels.astype(str)
    return labels


def unequal_samples(X) -> str:
    """What makes a list of samples ragged, naming the first sample of another shape than X[0]
    (NumPy's own message speaks of an "inhomogeneous part")."""
    def shape(item):
        try:
            return np.shape(item)
        except ValueError:  # ragged inside too
            return f"{len(item)} ragged items" if hasattr(item, "__len__") else "?"

    try:
        items = list(X)
    except TypeError:
        return f"X ({type(X).__name__}) cannot be read as one array"
    first = shape(items[0])
    other = next((i for i in range(1, len(items)) if shape(items[i]) != first), None)
    if other is None:  # the first item is ragged inside
        return f"X[0] is ragged ({first}): every sample needs one shape"
    return (f"X holds samples of unequal shape: X[0] has shape {first}, X[{other}] has {shape(items[other])}; "
            "every sample needs one shape (pad or cut series to one length)")


def content_hash(dataset: Dataset) -> str:
    """What the data is, for a study's settings: shape, features and labels, hashed."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(repr((dataset.shape, dataset.X.shape, str(dataset.X.dtype), str(dataset.y.dtype),
                        dataset.feature_names)).encode())
    digest.update(np.ascontiguousarray(dataset.X).tobytes())
    digest.update(np.ascontiguousarray(dataset.y).tobytes())
    return digest.hexdigest()[:16]


def save_npz(path, dataset: Dataset):
    """Writes a Dataset as an NPZ that `load_dataset` reads back to the same arrays (X in
    its sample shape, y, and feature_names where it has them); no pickle needed."""
    arrays = {"X": dataset.X.reshape(len(dataset.X), *dataset.shape), "y": dataset.y}
    if dataset.feature_names:
        arrays["feature_names"] = np.asarray(dataset.feature_names, dtype=str)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load_numpy(path):
    try:
        with open(path, "rb") as file:
            head = file.read(6)
        if head == b"\x93NUMPY" or head[:4] == b"PK\x03\x04":  # np.load takes anything else for a pickle
            return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as NumPy data ({_first_line(exc)})") from None
    raise DataError(f"{path}: not NumPy data (no .npy or .npz header): damaged, or another format")


def _as_rows(array):
    """One row of features per sample; also for no samples, which `reshape(0, -1)` cannot take."""
    return array.reshape(len(array), int(np.prod(array.shape[1:])))


def _numeric(array, path, what):
    if np.iscomplexobj(array):  # a cast would drop the imaginary parts with only a warning
        raise DataError(f"{path}: {what} are complex numbers (dtype {array.dtype}); pass real features")
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} are not numeric (dtype {array.dtype})") from None


def _checked(dataset: Dataset, path: Path, labels_at=None) -> Dataset:
    """`labels_at`: where the labels are, if not in `path` (arrays' y); later errors about the
    labels (a class too small) name it as `source`."""
    if len(dataset.X) != len(dataset.y):
        raise DataError(f"{path}: {len(dataset.X)} feature rows but {len(dataset.y)} labels")
    if len(dataset.X) == 0 or dataset.X.shape[1] == 0:
        raise DataError(f"{path}: no rows or no feature columns")
    check_labels(dataset.y, labels_at or path, dataset.target_name)
    return replace(dataset, source=str(labels_at or path))


def check_labels(y, path, target):
    """Every row needs a label: a missing one would become a class of its own (NaN) or fail
    deep inside scikit-learn."""
    import pandas as pd

    values = np.asarray(y, dtype=object)
    blank = np.fromiter((isinstance(v, str) and v == "" for v in values.ravel()), bool, values.size)
    missing = np.flatnonzero(pd.isna(values).ravel() | blank)  # elementwise == "" fails on pd.NA
    if len(missing):
        raise DataError(f"{path}: target {target!r} has no label in {len(missing)} row(s) (first: {row_name(path, int(missing[0]))}); "
                        "drop or fill them")
    numbers = np.asarray(y)
    if numbers.dtype.kind == "f":  # 0.5, 1.5, ...: a regression target, which no classifier probe takes
        fractional = np.flatnonzero(numbers != np.round(numbers))
        if len(fractional):
            row = int(fractional[0])
            raise DataError(f"{path}: target {target!r} holds non-integer numbers ({numbers[row]} in {row_name(path, row)}): "
                            "the probe is a classifier and needs class labels, not a continuous target")


def names_features(X) -> bool:
    """Whether X's column names are feature names: scikit-learn's rule, a DataFrame's column
    names only where all of them are strings (others take columns by position)."""
    return hasattr(X, "columns") and all(isinstance(c, str) for c in X.columns)


def first_non_finite(X, sample_shape=(), beyond=np.inf):
    """(row, position, value) of the first NaN or inf in the flat rows X (or value beyond
    +-`beyond`), or None. The position is where X[row] has it in a sample of `sample_shape`
    (a sequence's or image's flat column unravelled), else (column,)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(X) | (np.abs(X) > beyond)
    if not bad.any():
        return None
    row, column = map(int, np.argwhere(bad)[0])
    position = np.unravel_index(column, sample_shape) if len(sample_shape) > 1 else (column,)
    return row, tuple(map(int, position)), X[row, column]


def _check_finite(dataset: Dataset, path: Path):
    """Refuses NaN, inf and values beyond float32's range (the encoders compute in float32: such
    a value in the test part failed the export, after the whole search)."""
    found = first_non_finite(dataset.X, dataset.shape, beyond=FLOAT32_MAX)
    if found is None:
        return
    row, position, value = found
    why = ("NaN/inf not allowed" if not np.isfinite(value) else
           f"beyond float32's range, +-{FLOAT32_MAX:.1e}, in which the encoders compute: rescale the feature")
    if len(dataset.shape) > 1:
        unequal = dataset.kind == "sequence" and not np.isfinite(value)  # NaN padding, most likely
        hint = "; pad or resample series of unequal length to one length" if unequal else ""
        raise DataError(f"{path}: X[{', '.join(map(str, (row, *position)))}] is {value} ({why}{hint})")
    name = dataset.feature_names[position[0]] if dataset.feature_names else f"column {position[0]}"
    raise DataError(f"{path}: {name!r} has {value} in {row_name(path, row)} ({why})")


def row_name(where, index: int) -> str:
    """How errors name a data row: in a CSV file its line as an editor shows it (the header is
    line 1); in arrays, DataFrames and NumPy files its position, as X[i] and X.iloc[i] take it."""
    return f"line {index + 2}" if Path(str(where)).suffix.lower() == ".csv" else f"row {index}"


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
