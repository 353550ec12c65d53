"""Errors of the search engine. `SearchError` and encoderkit's errors are user errors: the CLI
prints them as one line and exits with status 2."""


class SearchError(Exception):
    """Root of every error the engine raises on purpose about user input."""


class SettingsError(SearchError, ValueError):
    """A setting (an argument, flag or environment variable) has a value the engine cannot
    take; the message names the setting and the value. A ValueError, as scikit-learn raises
    for an estimator's invalid parameters."""


class SpaceError(SearchError, ValueError):
    """A search space file is malformed; the message names the file, key path and value."""


class StudyError(SearchError):
    """A study directory is missing, inconsistent or belongs to another configuration."""


class OtherStudy(StudyError):
    """A study directory holds a study of other settings or data than a run asks for."""


class OtherData(StudyError):
    """The data given is not the study's (its split or content hash differs): `what` says how."""

    def __init__(self, message: str, what: str = ""):
        super().__init__(message)
        self.what = what


class FailedTrial(Exception):
    """This trial failed (bad shape, NaN loss, ...): record it as failed and go on."""


class PruneTrial(Exception):
    """The pruner stopped this trial early; each backend maps it to its own signal."""


class FatalSearchError(SearchError):
    """The search cannot go on (e.g. too many trials failed in a row). Raised by a run, it
    carries `result`, the study's leaderboard so far (each failed trial with its reason)."""

    result = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; `result` holds the leaderboard of what had finished."""

    def __init__(self, result):
        super().__init__("interrupted")
        self.result = result


def suggested_command(*words) -> str:
    """`python -m search WORDS...` as a user can paste it: each word shell-quoted, so a study
    directory or storage URL with spaces or quotes in its name still works."""
    import shlex

    return " ".join(["python -m search", *(shlex.quote(str(word)) for word in words)])
