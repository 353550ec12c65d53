"""Architecture search over autoencoder families, scored by a downstream probe.

    import search
    result = search.run(X, y, trials=20)          # arrays, a DataFrame, a file or "digits"
    print(result)                                 # the leaderboard
    codes = result.best_estimator.transform(X)

    from search import EncoderSearch              # the same as a scikit-learn estimator
    codes = EncoderSearch(trials=20).fit(X, y).transform(X)

The engine is imported on first use, so `import search` stays cheap."""

__all__ = ["run", "resume", "export_best", "replay", "read_space", "StudyResult", "TrialRecord", "EncoderSearch"]

_MODULES = {
    "run": "search.engine", "resume": "search.engine",
    "export_best": "search.refit", "replay": "search.refit", "read_space": "search.space",
    "StudyResult": "search.results", "TrialRecord": "search.results",
    "EncoderSearch": "search.estimator",
}


def __getattr__(name):
    if name in _MODULES:
        import importlib
        import sys

        if _MODULES[name] in sys.modules:
            return getattr(sys.modules[_MODULES[name]], name)
        from search.interrupts import deferred

        with deferred():  # a Ctrl-C inside the engine's imports would break them for the whole process
            module = importlib.import_module(_MODULES[name])
        return getattr(module, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


def __dir__():  # a notebook's `search.<Tab>` lists the lazy names too
    return sorted({*globals(), *__all__})
