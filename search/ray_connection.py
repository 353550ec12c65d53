"""This process's connection to Ray: the one a search started, kept for the next search in the
same process (a notebook's), or the caller's own `ray.init`, which is theirs and left alone.

Ray is imported only when it is used: the CLI's --help and the optuna backend never load it."""

from __future__ import annotations

import os
import sys

_NOT_OURS = object()
# The address a search started Ray with (None: a new local instance); _NOT_OURS when no
# search of this process started the Ray that runs here.
_started_for = _NOT_OURS


def callers_ray() -> bool:
    """Ray runs in this process and the caller started it (`ray.init(num_gpus=...)`): it
    declares its own resources and cluster, which a search uses as they are."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized() and _started_for is _NOT_OURS


def start_ray(address):
    """Joins the cluster at `address` (`auto`: the one running here, as in a `ray job`), or
    starts Ray in this process. A Ray that an earlier search of this process started for
    another address is shut down first: a notebook's second search, given a cluster, ran on
    the first one's local Ray without a word. Ray's logs stay in its session directory."""
    global _started_for
    import ray

    if ray.is_initialized():
        if _started_for is _NOT_OURS or _started_for == address:
            return
        ray.shutdown()
    _started_for = _NOT_OURS
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/TensorBoard files per trial
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C is ours (interrupts.py)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0; ours is the bar
    # Intermediate results carry only the probe score; the final one adds the score.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:  # "local": a new instance even when a cluster runs on this machine
        ray.init(address="local", logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    _started_for = address


def connected_elsewhere(address) -> bool:
    """Ray runs here, started by an earlier search for another address than `address`."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized() and _started_for is not _NOT_OURS and _started_for != address
