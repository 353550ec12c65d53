"""Search backends by name. Each module exposes

    Options: its options type (search/settings.py), which validates the backend's own
        options before any work and writes them into the study's manifest
    run(study, problem, space, progress) -> str | None
        runs trials until the study's requested count, each through the shared
        `records.TrialLifecycle` (seed, start attributes, how it ends, --max-failures,
        --timeout, progress), writing them to the study's Optuna storage so the
        leaderboard, report and export read one schema; returns a note saying why where
        it stopped short of the count for a reason of its own (not the timeout); a
        backend with a start-up of its own calls `TrialLifecycle.start_clock()` after it,
        so that the timeout counts the search, not the start-up
    check_continues(directory, options) -> None (optional)
        refuses (StudyError) options that cannot continue the backend's own saved state in
        an existing study, before a re-run writes anything
    check_space(space, options) -> None (optional)
        refuses (SearchError) a space the backend cannot search, before a run writes anything

A backend passes the shipped suite, `search.testing.backend_conformance`.

Modules are imported only when chosen, so unused tuners cost nothing."""

import importlib

BACKENDS = {
    "optuna": "search.backends.optuna_backend",
    "ray": "search.backends.ray_backend",
    "kerastuner": "search.backends.kerastuner_backend",
}


def get_backend(name: str):
    from search.errors import SearchError, SettingsError

    if name not in BACKENDS:
        raise SettingsError(f"backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:  # an optional tuner that is not installed
        raise SearchError(f"backend {name}: needs {exc.name!r}, which is not installed (pip install 'encoderkit[{name}]')") from None
