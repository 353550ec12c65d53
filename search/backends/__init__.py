"""Search backends by name. Each module exposes `run(study, progress) -> None`, writing trials
to the study's Optuna storage so the leaderboard, report and export read one schema.
Modules are imported only when chosen, so unused tuners cost nothing."""

import importlib

BACKENDS = {"optuna": "search.backends.optuna_backend"}


def get_backend(name: str):
    if name not in BACKENDS:
        from search.errors import SearchError

        raise SearchError(f"--backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return importlib.import_module(BACKENDS[name])
