"""This process's connection to Ray: the one a search started, kept for the next search in the
same process (a notebook's), or the caller's own `ray.init`, which is theirs and left alone.

Ray is imported only when it is used: the CLI's --help and the optuna backend never load it."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

# The Ray a search of this process started: its connection (the driver's job and node ids: a
# new job at every ray.init on a cluster, a new node for every local instance, so a caller's
# own ray.init after a ray.shutdown is told apart), the address it was given (None: local) and
# the cluster's own address (GCS), so that `auto` and the HOST:PORT it found are one cluster.
_started = {"connection": None, "address": None, "gcs": None}


def _running():
    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def _connection(ray) -> tuple:
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


def _ours(ray) -> bool:
    # (no search started one: the caller's, whatever it is, Ray Client's included)
    return _started["connection"] is not None and _started["connection"] == _connection(ray)


def callers_ray() -> bool:
    """Ray runs in this process and the caller started it (`ray.init(num_gpus=...)`): it
    declares its own resources and cluster, which a search uses as they are."""
    ray = _running()
    return ray is not None and not _ours(ray)


def connected_elsewhere(address) -> bool:
    """Ray runs here, started by an earlier search of this process for another address."""
    ray = _running()
    return ray is not None and _ours(ray) and address not in (_started["address"], _started.get("gcs") or "")


def replacement_note(address) -> list[str]:
    """Said when a search is to shut down the Ray an earlier search of this process started,
    whose actors and objects the notebook may still use."""
    if not connected_elsewhere(address):
        return []
    before = f"the Ray cluster at {_started['address']}" if _started["address"] else "the local Ray"
    return [f"{before}, which an earlier search in this process started, is shut down to run this one "
            f"{f'on the cluster at {address}' if address else 'on a new local Ray'}"]


@contextlib.contextmanager
def _sigterm_blocked_in_processes_started():
    """Ray's own processes (GCS, raylet, and the workers the raylet starts) inherit a blocked
    SIGTERM, as Ray blocks SIGINT in them: Slurm, systemd and `timeout` send SIGTERM to every
    process of the job, and a local Ray that died with the driver left it waiting a minute on
    its GCS, then exiting 1 with no leaderboard. The driver's own stop then ends them."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def start_ray(address):
    """Joins the cluster at `address` (`auto`: the one running here, as in a `ray job`), or
    starts Ray in this process. A Ray that an earlier search of this process started for
    another address is shut down first: a notebook's second search, given a cluster, ran on
    the first one's local Ray without a word. Ray's logs stay in its session directory."""
    import ray

    from search import devices

    if ray.is_initialized():
        if not connected_elsewhere(address):  # the caller's, or this address's already
            return
        stop_ray()
    # ray.init installs a SIGTERM handler that exits with status 15 at once: a scheduler's stop
    # would skip the command's own (the leaderboard, exit 143). The caller's handler stays.
    main = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:  # "local": a new instance even when a cluster runs on this machine
            with _sigterm_blocked_in_processes_started():
                # The CPUs this process may use (an affinity mask too), as the preflight counted them
                ray.init(address="local", logging_level="ERROR", log_to_driver=False, include_dashboard=False,
                         num_cpus=devices.usable_cores())
    finally:
        if main and on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
    _started.update(connection=_connection(ray), address=address,
                    gcs=ray.get_runtime_context().gcs_address if address else None)
    if not address:  # before Ray's own exit handler (registered when ray was imported: atexit runs last first)
        atexit.unregister(stop_ray)  # (once, however many local Rays this process started)
        atexit.register(stop_ray)


# What Tune reads from the environment, set for a search's run only: a notebook's own Tune
# runs after it keep Tune's defaults (a user's own value of one is kept during the search too).
TUNE_ENVIRONMENT = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/TensorBoard files per trial
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C is ours (interrupts.py)
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter honours verbose=0; ours is the bar
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # intermediate results carry only the probe score
}


@contextlib.contextmanager
def tune_environment():
    """os.environ with TUNE_ENVIRONMENT's values where the caller set none; as it was after."""
    added = [key for key in TUNE_ENVIRONMENT if key not in os.environ]
    os.environ.update({key: TUNE_ENVIRONMENT[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def stop_ray():
    """Shuts down the Ray a search of this process started. A local one's processes ignore
    SIGTERM (above), on which `ray.shutdown` waits a second each before SIGKILL: 6-8 s at
    every exit, a second Ctrl-C's too. They, and what the raylet started (its agents
    outlived it by a minute when killed first), are killed at once instead."""
    ray = _running()
    if ray is None or not _ours(ray):
        return
    node = None if _started["address"] else _local_node(ray)
    if node is None:  # a cluster's processes are not ours to stop
        ray.shutdown()
        return
    import psutil  # (a dependency of Ray's)

    family = []
    for infos in list(node.all_processes.values()):
        for info in infos:
            with contextlib.suppress(psutil.Error):
                family.extend(psutil.Process(info.process.pid).children(recursive=True))
    kill_all = node.kill_all_processes
    node.kill_all_processes = lambda **options: kill_all(**{**options, "allow_graceful": False})
    ray.shutdown()
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _local_node(ray):
    """The processes Ray started in this process (its `Node`), where this Ray release has one."""
    try:
        return ray._private.worker._global_node
    except AttributeError:
        return None
