"""Checks that run before a command writes anything: a refused command leaves no study behind
and changes nothing in an existing one. Each failure is a `SearchError` whose one line names
the setting (as a Python parameter name; the CLI maps it to its flag), the path and the value."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from search.errors import SearchError, SettingsError, StudyError, setting

# What each optional component needs importable, and how to get it.
PACKAGES = {
    "ray": ("ray", "pip install 'encoderkit[ray]'"),
    "kerastuner": ("keras_tuner", "pip install 'encoderkit[kerastuner]'"),
    "jax": ("jax", "pip install 'encoderkit[jax]' (or JAX with CUDA on a GPU machine)"),
    "torch": ("torch", "pip install torch"),
    "tensorflow": ("tensorflow", "pip install tensorflow-cpu (or tensorflow)"),
}


def check_installed(what: str, name: str):
    """`name` (a search backend or a Keras backend) can be imported here."""
    module, how = PACKAGES.get(name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise SearchError(f"{what} {name}: needs the Python package {module!r}, which is not installed ({how})")


def check_machine(backend: str, options) -> list[str]:
    """What a search asks of this machine, before anything is written; notes for the user.

    The optuna backend starts `workers` processes here, each loading its Keras backend and
    holding a core: more than the machine has only makes every trial slower (and
    `--workers 1000` would exhaust its memory). Ray started here (no --address) would wait for
    ever, silently, for a trial's --cpus-per-trial or --gpus-per-trial that it never gets; on a
    cluster, or in a Ray the caller started, Ray places the trials (an autoscaler may add nodes):
    a cluster is joined here, so a bad address ends the command now, and a trial no node of it
    can take is noted."""
    from search import devices
    from search.ray_connection import callers_ray, replacement_note

    cores = devices.usable_cores()
    if backend == "optuna" and options.workers > cores:
        raise SettingsError(f"workers: {options.workers} worker processes on the {cores} cores this process may use; "
                            f"at most {cores} (more machines: `python -m search join` on a shared "
                            f"{setting('storage')}, or {setting('backend', 'ray')})")
    if backend == "ray" and callers_ray():
        import ray

        if ray.util.client.ray.is_connected():  # the caller's own ray.init("ray://...")
            raise SettingsError(f"address: this process is connected to Ray through Ray Client, {RAY_CLIENT_UNUSABLE}")
    replaced = replacement_note(options.address) if backend == "ray" else []
    if backend == "ray" and options.address is not None:
        import ray

        connect_ray(options.address)
        alive = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        return [*replaced, *unplaceable(alive, options)]
    if backend == "ray" and options.address is None and not callers_ray():
        if options.cpus_per_trial > cores:
            raise SettingsError(f"cpus_per_trial: {options.cpus_per_trial:g} CPUs per trial, but Ray started here "
                                f"has the {cores} this process may use; no trial could start")
        gpus = len(devices.detect_gpus())
        if options.gpus_per_trial > gpus:
            raise SettingsError(f"gpus_per_trial: {options.gpus_per_trial:g} GPUs per trial, but this machine has "
                                f"{gpus}; no trial could start ({setting('address')} joins a cluster that has them)")
        notes = [*replaced, *fewer_at_once(options, cores, gpus)]
        given = os.environ.get("RAY_ADDRESS")  # set by `ray job submit` in its entrypoint, and by users for ray.init
        if given:
            # (not for a dashboard or client URL)
            use = f"; {setting('address', 'auto')} uses that cluster" if "://" not in given else ""
            notes.append(f"RAY_ADDRESS={given} is set, but without {setting('address')} Ray is started here, in this "
                         f"process{use}")
        return notes
    return replaced


def fewer_at_once(options, cores: int, gpus: int) -> list[str]:
    """A note where Ray started here cannot run `workers` trials at once: it runs as many as
    the machine's CPUs and GPUs hold, without a word (the optuna backend refuses more workers
    than cores)."""
    fits = [cores / options.cpus_per_trial, *([gpus / options.gpus_per_trial] if options.gpus_per_trial else [])]
    at_once = int(min(fits) + 1e-9)
    if at_once >= options.workers:
        return []
    return [f"workers: Ray started here runs {at_once} trial(s) at once, not {options.workers}: each asks for "
            f"{options.cpus_per_trial:g} CPU(s) and {options.gpus_per_trial:g} GPU(s), and it has "
            f"{cores} CPU(s) and {gpus} GPU(s)"]


def unplaceable(nodes: list[dict], options) -> list[str]:
    """A note when no node of a cluster (each node's resources, as `ray.nodes()` gives them)
    has what one trial asks for: Ray waits for such a node without a word (its warning is in
    its own logs), and an autoscaler may add one, so it is said, not refused."""
    notes = []
    for resource, asked in (("CPU", options.cpus_per_trial), ("GPU", options.gpus_per_trial)):
        most = max((node.get(resource, 0) for node in nodes), default=0)
        if asked > most:
            notes.append(f"no node of the Ray cluster at {options.address} has the {asked:g} {resource}s a trial "
                         f"asks for (the most on one node: {most:g}); trials wait until such a node joins")
    return notes


# Under Ray Client, Tune runs the experiment on the head node, whose callbacks cannot reach this
# process's study: no trial was ever stored, and the search began new experiments for ever
# (measured with a local head and --address ray://127.0.0.1:PORT).
RAY_CLIENT_UNUSABLE = ("which the ray backend cannot use (Tune would run the search on the head node, away from "
                       "this study's storage); run it on the cluster: ray job submit --address http://HEAD:8265 -- "
                       "python -m search run --backend ray --address auto --study-dir /shared/DIR")


def connect_ray(address: str, again: str = ""):
    """Joins the Ray cluster at `address` now, before a study is made or changed: a bad
    address was a traceback (or, where nothing answered, a hang of minutes) after the
    baselines were scored and a study written. `again`: how to continue with another address.
    The search then runs in this connection (ray_connection.start_ray keeps it)."""
    import socket

    fix = f"; {again}" if again else ""
    dialled, source = address, "address"
    if address == "auto" and os.environ.get("RAY_ADDRESS") not in (None, "", "auto"):  # ray.init("auto") dials it
        dialled, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    named = f"address {address}" if source == "address" else f"RAY_ADDRESS={dialled} (which --address auto dials)"
    if dialled.startswith("ray://"):
        raise SettingsError(f"{source}: {dialled} is a Ray Client address, {RAY_CLIENT_UNUSABLE}")
    if dialled.startswith(("http://", "https://")):  # `ray job submit`'s address, not the cluster's
        raise SettingsError(f"{source}: {dialled} is the dashboard's (Jobs API) address; give the cluster's "
                            "HOST:PORT (the head's GCS port, 6379 by default) or auto")
    import ray

    from search.ray_connection import connected_elsewhere, start_ray

    if ray.is_initialized() and not connected_elsewhere(address):  # the caller's, or this address's already
        return
    if dialled != "auto" and "://" not in dialled and not _host_and_port(dialled):
        # (Ray's own check logged an error with a traceback before its ValueError)
        raise SettingsError(f"{source}: expected HOST:PORT (a port 1-65535) or auto, got {dialled!r}")
    try:
        from ray._private.services import canonicalize_bootstrap_address

        # another scheme (http:// is the Jobs API's): ray.init says what is wrong
        target = None if "://" in dialled else canonicalize_bootstrap_address(dialled)
    except (ImportError, AttributeError):  # Ray's private helper moved: ray.init reports what is wrong
        target = None
    except ValueError:
        raise SettingsError(f"{source}: expected HOST:PORT or auto, got {dialled!r}") from None
    except ConnectionError:  # auto, with no cluster started on this machine
        raise SearchError(f"{named}: no Ray cluster runs on this machine (start one with "
                          f"`ray start --head`, or give its HOST:PORT){fix}") from None
    if target:  # Ray would retry a silent address for minutes
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            if target != dialled:  # Ray names this host by its IP: both, so the user finds what they typed
                reason = f"{reason}; Ray dials it as {target}"
            raise SearchError(f"{named}: no Ray cluster answers at {dialled} ({reason}){fix}") from None
    import tempfile

    from encoderkit.quiet import stderr_silenced

    # Ray's C++ client repeats a refused connection on stderr once a second (some 20 lines
    # for a missing token) before ray.init gives up: kept, and read for the cause.
    with tempfile.TemporaryFile("w+", errors="replace") as said:
        try:
            with stderr_silenced(into=said):
                start_ray(address)
            return
        except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
            # (RAY_AUTH_MODE=token without a token: ray.init's own AuthenticationError)
            said.seek(0)
            if "InvalidAuthToken" in said.read() or isinstance(exc, ray.exceptions.AuthenticationError):
                raise SearchError(f"address {address}: the cluster refused this process's token (RAY_AUTH_TOKEN is "
                                  "missing or not the cluster's: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the "
                                  f"head's token>){fix}") from None
            raise SearchError(f"address {address}: cannot connect to Ray ({_ray_reason(exc)}){fix}") from None


def _host_and_port(address: str) -> bool:
    """Whether `address` reads as HOST:PORT (an IPv6 host in brackets)."""
    host, _, port = address.rpartition(":")
    return bool(host.strip("[]")) and port.isdigit() and 0 < int(port) < 65536


def _ray_reason(exc) -> str:
    """ray.init's error in one line: its first line, with the fix it goes on to list."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    reason = lines[0]
    if reason.endswith(":") and len(lines) > 1:  # "... To fix this, either:" and the ways on the next lines
        reason = " ".join([reason, *lines[1:3]])
    return reason


def keras_backend_to_use(requested=None) -> str:
    """The Keras backend a command will run: the one asked for, else $KERAS_BACKEND, else
    TensorFlow (Keras' own default). An unknown $KERAS_BACKEND is refused here, before a
    manifest records it (Keras' own error came as a traceback, in every later command too)."""
    from search.settings import KERAS_BACKENDS

    given = requested or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if given not in KERAS_BACKENDS:
        lower = f"; in lower case: KERAS_BACKEND={given.lower()}" if given.lower() in KERAS_BACKENDS else ""
        raise SettingsError(f"KERAS_BACKEND={given!r}: not a Keras backend (known: {', '.join(KERAS_BACKENDS)}{lower})")
    return given


def check_jax_platforms(keras_backend: str):
    """$JAX_PLATFORMS names the platforms JAX must start (`cuda`): where one cannot start (no
    working CUDA), every trial failed with JAX's bare AssertionError, and the baselines with a
    traceback. Checked where it is set and the search runs on JAX (unset, JAX falls back to the
    CPU by itself)."""
    platforms = os.environ.get("JAX_PLATFORMS")
    if keras_backend != "jax" or not platforms:
        return
    try:
        import jax

        jax.devices()
    except Exception as exc:  # noqa: BLE001  (JAX raises AssertionError, RuntimeError, ... here)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
        raise SettingsError(f"JAX_PLATFORMS={platforms!r}: JAX cannot start it ({type(exc).__name__}: {reason}); "
                            "unset it to let JAX choose, or set JAX_PLATFORMS=cpu") from None


def choose_keras_backend(name):
    """`keras_backend=` of `search.run` and `EncoderSearch`, the command line's --keras-backend:
    this process runs Keras on `name` (None: as it would anyway). Set before Keras is first
    imported; a process that already runs another one is refused (Keras cannot switch)."""
    from search.settings import KERAS_BACKENDS

    if name is None:
        return
    if name not in KERAS_BACKENDS:
        raise SettingsError(f"keras_backend: expected one of {', '.join(KERAS_BACKENDS)}, got {name!r}")
    check_installed("keras_backend", name)
    _run_keras_on(name, lambda active: SettingsError(
        f"keras_backend: {name!r}, but this process already runs Keras on {active!r}; set KERAS_BACKEND={name} "
        "before Keras is first imported (in a notebook: restart the kernel)"))


def use_keras_backend(name):
    """A study keeps the Keras backend it began with, in every command that fits or loads its
    models (run, resume, export, replay, join); workers inherit it. Before Keras is imported."""
    if name:
        _run_keras_on(name, lambda active: StudyError(
            f"study uses Keras backend {name!r} but this process already runs {active!r}; set KERAS_BACKEND={name}"))


def _run_keras_on(name, refusal):
    """Keras in this process, and the workers it starts, run on `name`: set before Keras is
    imported; where it already runs another backend, raise `refusal(active)` (Keras cannot switch)."""
    import sys

    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise refusal(keras.backend.backend())
    os.environ["KERAS_BACKEND"] = name


def use_study_keras_backend(study):
    """`use_keras_backend` for a study's own backend, refused in one line where it is not installed."""
    name = study.manifest.get("keras_backend") or "tensorflow"
    check_installed(f"{study.directory}: Keras backend", name)
    use_keras_backend(name)


# Where `ray job submit --working-dir` unpacks a job's files (its entrypoint's cwd).
RAY_JOB_COPY = "/runtime_resources/working_dir_files/"


def check_writable_study_dir(directory, hint="to search or export use another directory") -> Path:
    """A study directory that can be created or written: not a plain file, and writable
    (itself if it exists, else the nearest existing parent); `hint` ends the read-only error."""
    if not isinstance(directory, (str, os.PathLike)):
        raise SettingsError(f"study_dir: expected a folder path, got {directory!r}")
    if not os.fspath(directory).strip():
        raise SettingsError("study_dir: an empty path; give a folder, or none for studies/NAME-TIME")
    directory = Path(directory).expanduser()
    if not directory.is_absolute() and RAY_JOB_COPY in Path.cwd().as_posix():
        raise SettingsError(f"study_dir: {os.fspath(directory)!r} is relative, and this Ray job runs in Ray's temporary "
                            f"copy of its working directory ({Path.cwd()}), which Ray deletes: give an absolute path "
                            "(the default, studies/NAME-TIME, is relative too)")
    if directory.exists() and not directory.is_dir():
        raise SearchError(f"{directory}: is a file, not a study directory")
    existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise SearchError(f"{directory}: cannot be created ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == directory:
            raise SearchError(f"{directory}: read-only study directory (no write permission); report works there, {hint}")
        raise SearchError(f"{directory}: cannot be created ({existing} has no write permission)")
    database = directory / "study.db"
    if database.exists() and not os.access(database, os.W_OK):
        raise SearchError(f"{database}: read-only (no write permission); report works there, "
                          "to search or export use another directory")
    return directory


def check_report_file(path: Path, marker: str) -> Path:
    """A file the HTML report may create, or replace where it is an earlier report (its first
    bytes hold `marker`): -o naming a study's manifest or a user's own file must not destroy it."""
    from encoderkit.export import export_around

    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SearchError(f"out: {path} is a directory; give a file name")
    export = export_around(path)
    if export is not None:  # the export would refuse to load, and the next export to replace it
        raise SearchError(f"out: {path} is inside the export {export}, which holds only the files its manifest "
                          "lists; write the report beside it")
    if not folder.is_dir():
        problem = "is not a directory" if folder.exists() else "does not exist"
        raise SearchError(f"out: cannot write {path} ({folder} {problem})")
    if path.exists() and path.stat().st_size > 0:  # an empty file (mktemp's) holds nothing to lose
        try:
            with open(path, "rb") as existing:
                head = existing.read(1024)
        except OSError as exc:
            raise SearchError(f"out: cannot read {path} to check it is a report ({exc.strerror})") from None
        if marker.encode() not in head:
            raise SearchError(f"out: {path} exists and is not a study report; pass another -o or remove it")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(folder, os.W_OK | os.X_OK):
        raise SearchError(f"out: cannot write {path} (no write permission; pass another -o)")
    return path
