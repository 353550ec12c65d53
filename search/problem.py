"""The labelled data of a study, split once into a search part and a held-out test part.

The split is stratified and seeded; its hash goes into the manifest so every worker, a resume
and an export can prove they use the same rows. The test part is only read by `test_scores`.

With `subsample`, trials (and the baselines' CV scores beside them) see a stratified, seeded
subsample of the search part, and the export refits the winner on the whole search part: the
usual way to search on a large dataset (choose the architecture on a cheap fidelity, train the
final model on everything), like scikit-learn's successive halving over `n_samples`."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from encoderkit.data import Dataset
from encoderkit.errors import DataError
from encoderkit.probe import resolve_metric
from search.devices import cores_per_worker
from search.errors import setting


@dataclass(frozen=True, eq=False)
class Problem:
    dataset: Dataset
    search_rows: np.ndarray
    test_rows: np.ndarray
    metric: str
    folds: int
    seed: int
    probe: str = "logistic_regression"
    probe_jobs: int = 1  # probe folds fitted at once: the cores this worker owns
    subsample: int | None = None  # rows of the search part each trial sees (None: all)
    notes: tuple = ()  # what was adjusted, for the user

    # Sliced once per worker, not once per trial (Fashion-MNIST's search part is 190 MB).
    @functools.cached_property
    def X(self):
        return self.dataset.X[self.search_rows]

    @functools.cached_property
    def y(self):
        return self.dataset.y[self.search_rows]

    @functools.cached_property
    def trial_rows(self) -> np.ndarray:
        """Positions in the search part that trials train and score on."""
        if self.subsample is None:
            return np.arange(len(self.search_rows))
        # A class rarer than the proportional draw can keep gets the rows CV needs of it.
        return stratified_subsample(self.y, self.subsample, self.seed, rows_per_class(self.folds))

    @functools.cached_property
    def trial_X(self):
        return self.X if len(self.trial_rows) == len(self.search_rows) else self.X[self.trial_rows]

    @functools.cached_property
    def trial_y(self):
        return self.y if len(self.trial_rows) == len(self.search_rows) else self.y[self.trial_rows]

    def test_part(self):
        """The held-out rows; used once per export for the final score, never in the search."""
        return self.dataset.X[self.test_rows], self.dataset.y[self.test_rows]

    def split_hash(self) -> str:
        return self._split_hash

    @functools.cached_property
    def _split_hash(self) -> str:
        # Hashes all of X (seconds on Fashion-MNIST); a run on an existing study compares it
        # several times (study identity, a moved file, the manifest), so it is computed once.
        digest = hashlib.sha256()
        for rows in (self.search_rows, self.test_rows):
            digest.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.dataset.X).tobytes())
        return digest.hexdigest()[:16]


def stratified_subsample(y, size, seed, min_per_class=0) -> np.ndarray:
    """Sorted positions of a stratified, seeded sample of `size` rows (all rows if fewer).
    With `min_per_class`, a class the proportional draw left with fewer rows gets more of its
    own (all it has, if fewer), so CV on the sample keeps every class in every fold."""
    if len(y) <= size:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    if min_per_class:
        y, chosen = np.asarray(y), np.zeros(len(y), dtype=bool)
        chosen[rows] = True
        rng = np.random.default_rng(seed)
        for label in np.unique(y):
            missing = min_per_class - int(np.sum(chosen & (y == label)))
            if missing > 0:
                spare = np.flatnonzero(~chosen & (y == label))
                chosen[rng.permutation(spare)[:missing]] = True
        rows = np.flatnonzero(chosen)
    return np.sort(rows)


def folds_advice(folds: int, fits) -> list[str]:
    """The advice to use the most folds other than `folds` for which `fits(k)` holds (more
    folds need more rows, but 2 folds need 4, more than 3 folds do), as the user sets it; none
    where no count fits."""
    fitting = [k for k in range(2, max(folds, 4)) if k != folds and fits(k)]
    return [f"use {setting('cv', fitting[-1])} (these rows allow it)"] if fitting else []


def rows_per_class(folds: int) -> int:
    """Rows of each class that stratified `folds`-fold CV needs: at least one in every test
    fold and two in every training fold (`folds` rows for 3 folds or more, 4 for 2 folds)."""
    rows = folds
    while rows - -(-rows // folds) < 2:  # the training folds' share: rows less the largest test fold
        rows += 1
    return rows


def no_folds_advice(folds: int, fits) -> list[str]:
    """For a stored study's folds, which its resume or joiner cannot change."""
    return []


def check_cv_rows(y, classes, folds, where, other_fix=None, advise=folds_advice):
    """Refuses, in one line naming every class's count, rows that stratified CV cannot split
    into `folds` folds with each class in every fold (a class absent counts 0); it names the
    most folds these rows allow, where there are some, and `other_fix`."""
    labels, counts = np.unique(y, return_counts=True)
    count = dict(zip(labels.tolist(), counts.tolist()))
    need = rows_per_class(folds)
    short = [c for c in classes.tolist() if count.get(c, 0) < need]
    if short:
        listed = ", ".join(f"{c!r} {count.get(c, 0)}" for c in classes.tolist())
        least = min(count.get(c, 0) for c in classes.tolist())
        fixes = [*advise(folds, lambda k: rows_per_class(k) <= least), *([other_fix] if other_fix else [])]
        advice = f"; {' or '.join(fixes)}" if fixes else ""
        raise DataError(f"{where} has {count.get(short[0], 0)} rows of class {short[0]!r}, too few for {folds}-fold CV "
                        f"(each class needs {need}: one in every test fold, two in every training fold; "
                        f"rows per class: {listed}){advice}")


def _safe_count(need: int, test_size: float) -> int:
    """Rows of a class that keep `need` in the search part whichever way the stratified split
    rounds its share of the test part (6 of a class at test_size 0.25 may leave 4, not 5)."""
    test_size = float(test_size)
    rows = max(need + 1, math.floor(need / (1 - test_size)))  # within a row or two of the answer
    while rows - math.ceil(rows * test_size) < need:
        rows += 1
    return rows


def _target_of(dataset: Dataset) -> str:
    """How class-count errors name the labels: the file and its label column where there is
    one (`runs.csv: target 'churn'`), else the dataset (`digits`)."""
    if dataset.source and dataset.target_name:
        return f"{dataset.source}: target {dataset.target_name!r}"
    return dataset.source or dataset.name


def make_problem(
    dataset: Dataset, *, test_size=0.25, seed=0, metric="auto", folds=5, probe="logistic_regression", workers=1,
    subsample=None, folds_fixed=False,
) -> Problem:
    """The split and scoring settings of a search on `dataset`, refused in one line where its
    classes are too small for them (with the folds that would fit, unless `folds_fixed`: a
    stored study's, for its resume or a joiner)."""
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(dataset.y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"{_target_of(dataset)}: the labels hold one class only ({classes.tolist()[0]!r}); a probe needs two")
    least, need = int(counts.min()), rows_per_class(folds)
    advise = no_folds_advice if folds_fixed else folds_advice
    # Each class needs a test row and `need` search rows for stratified CV.
    if least < need + 1:  # (a class of `need + 1` rows may still leave too few: refused after the split)
        split = "its test part" if dataset.test_rows is not None else f"a {test_size} test split"

        def enough(k):  # rows of a class for k-fold CV and its test rows
            if dataset.test_rows is not None:
                return rows_per_class(k) + 1
            return _safe_count(rows_per_class(k), test_size)

        advice = "".join(f"; {fix}" for fix in advise(folds, lambda k: enough(k) <= least))
        raise DataError(
            f"{_target_of(dataset)}: class {classes.tolist()[int(np.argmin(counts))]!r} has {least} rows, "
            f"too few for {split} and {folds}-fold CV (each class needs at least {enough(folds)}: {need} in the "
            f"search part for CV, the others in the test part){advice}"
        )
    fix = None
    if dataset.test_rows is not None:  # the dataset's own test part (Fashion-MNIST's 10k, a UCR test split)
        test_rows = np.asarray(dataset.test_rows)
        search_rows = np.setdiff1d(np.arange(len(dataset.y)), test_rows)
        where = f"{_target_of(dataset)}: the search part (the dataset's own training rows)"
    else:
        test_count = math.ceil(test_size * len(dataset.y))  # as train_test_split rounds it
        if test_count < len(classes):  # stratification puts a row of every class in the test part
            raise DataError(f"{dataset.source or dataset.name}: test_size={test_size} leaves {test_count} test rows of "
                            f"{len(dataset.y)}, fewer than its {len(classes)} classes; raise the test size")
        search_rows, test_rows = train_test_split(
            np.arange(len(dataset.y)), test_size=test_size, stratify=dataset.y, random_state=seed
        )
        where, fix = f"{_target_of(dataset)}: the search part ({1 - test_size:.0%} of the rows)", "lower the test size"
    # The whole dataset's counts say little when the test part is given, or the split rounds a
    # small class down: the rows CV runs on decide.
    check_cv_rows(dataset.y[search_rows], classes, folds, where, fix, advise)
    notes = ()
    if subsample is not None:
        _check_subsample(dataset, int(subsample), len(classes), folds, advise)
        if int(subsample) >= len(search_rows):
            notes = (f"subsample {subsample} is not smaller than the search part ({len(search_rows)} rows): "
                     "ignored, trials use every row",)
            subsample = None
    cores = cores_per_worker(workers)
    problem = Problem(
        dataset, np.sort(search_rows), np.sort(test_rows), resolve_metric(metric, dataset.y),
        folds, seed, probe, probe_jobs=min(cores, folds), subsample=None if subsample is None else int(subsample),
        notes=notes,
    )
    if problem.subsample is not None:
        # a guard: the sample tops rare classes up from the search part
        check_cv_rows(problem.trial_y, classes, folds, f"subsample {problem.subsample}: the stratified sample",
                      f"raise {setting('subsample')}", advise)
    return problem


def _check_subsample(dataset, subsample, n_classes, folds, advise):
    # Stratified CV needs `folds` rows of every class: a first, loose guard (the sample then
    # tops rare classes up to what CV and the checkpoint folds need).
    if subsample < n_classes * folds:
        advice = "".join(f"; {fix}" for fix in advise(folds, lambda k: n_classes * k <= subsample))
        raise DataError(
            f"subsample {subsample}: too small for {n_classes} classes and {folds} CV folds "
            f"(need at least {n_classes * folds}){advice}"
        )
