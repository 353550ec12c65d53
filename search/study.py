"""The study directory: manifest, space copy, Optuna storage, baselines, logs and export.

    DIR/manifest.json   what was asked for: data, split hash, space digest, metric, seeds,
                        budget, package versions
    DIR/space.yaml      the space as it was when the study began (resume uses this copy)
    DIR/study.db        Optuna's SQLite storage (opens in optuna-dashboard as it is)
    DIR/baselines.json  the baselines (raw, PCA; handcrafted or MiniRocket where the data
                        has them) scored with the same protocol
    DIR/logs/           one log per extra worker process
    DIR/export/         the exported best encoder (DIR/export-trial-N/: another trial's)
    DIR/test_uses.json  every scoring of the test part: when, which trial, the score
    DIR/data.npz        in-memory data (`search.run(X, y)`), which workers, resume and
                        export read back; its content hash is the study's `data` setting
    DIR/.lock           held by the run, resume or export working on the study
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from encoderkit.data import IN_MEMORY, content_hash, is_file_name, load_dataset, save_npz
from encoderkit.export import package_versions
from search.errors import OtherData, OtherStudy, SettingsError, StudyError, suggested_command
from search.lock import LOCK_NAME
from search.storage import STUDY_NAME
from search.problem import make_problem
from search.settings import KERAS_BACKENDS, OPTIONS, BackendOptions, Budget, StudySpec
from search.space import load_space, space_text

MANIFEST_VERSION = 1
TEST_USES = "test_uses.json"
SHARED_TEST_USE = "test_use:"  # a study user attribute in a shared storage, one per look at the test part
DATA_FILE = "data.npz"
# Settings that define what a study measures; a resume or re-run must not change them.
# (the space first: its own probe.cv changed is said as the space changed)
IDENTITY_KEYS = ("data", "target", "seed", "test_size", "metric", "space_digest", "folds", "subsample", "storage")


@dataclass(frozen=True)
class Study:
    directory: Path
    manifest: dict

    @property
    def storage_url(self) -> str:
        """The shared storage it was given (without password), else its own SQLite file."""
        return self.manifest.get("storage") or f"sqlite:///{(self.directory / 'study.db').resolve()}"

    @property
    def study_name(self) -> str:
        """Its name in the storage: "search" in its own SQLite file, its own in a shared one."""
        return self.manifest.get("study_name") or STUDY_NAME

    @property
    def export_dir(self) -> Path:
        return self.directory / "export"

    def space(self):
        space = load_space(str(self.directory / "space.yaml"), self.manifest.get("scale", 1.0), strict=False)
        if space.digest != self.manifest["space_digest"]:
            raise StudyError(f"{self.directory / 'space.yaml'}: changed since the study began (digest differs)")
        restricted, _ = space.for_kind(self.manifest["data_kind"])
        return restricted

    def problem(self):
        problem = make_problem(
            self.dataset(),
            test_size=self.manifest["test_size"],
            seed=self.manifest["seed"],
            metric=self.manifest["metric"],
            folds=self.manifest["folds"],
            probe=self.manifest["probe"],
            workers=BackendOptions.from_manifest(self.manifest).workers,
            subsample=self.manifest.get("subsample"),
            folds_fixed=True,
        )
        if problem.split_hash() != self.manifest["split_hash"]:
            what = f"split hash {problem.split_hash()} != {self.manifest['split_hash']}"
            raise OtherData(f"{self.directory}: the data or its split changed since the study began ({what})", what)
        return problem

    def move_data(self, path):
        """The study's data file is now at `path` (the split hash then checks its contents)."""
        if self.manifest["data"].startswith(IN_MEMORY) or not is_file_name(self.manifest["data"]):
            raise SettingsError(f"data={os.fspath(path)!r}: the study's data is {self.manifest['data']!r}, "
                                "not a file that could have moved")
        self.manifest["data"] = os.path.abspath(os.fspath(path))  # as `run` stores file paths

    def dataset(self):
        data = self.manifest["data"]
        if is_file_name(data) and not data.startswith(IN_MEMORY) and not Path(data).is_file():
            raise StudyError(f"{data}: no such file (the study's data); if it moved, give its new path: "
                             f"{suggested_command('resume', self.directory, '--data', 'NEWPATH')}")
        if not data.startswith(IN_MEMORY):
            return load_dataset(data, self.manifest["target"], self.manifest.get("data_dir"))
        path = self.directory / DATA_FILE
        if not path.is_file():
            raise StudyError(f"{path}: missing (the study's in-memory data is stored there)")
        import dataclasses

        dataset = load_dataset(path)
        if IN_MEMORY + content_hash(dataset) != data:
            what = f"content hash {content_hash(dataset)}, study: {data.removeprefix(IN_MEMORY)}"
            raise OtherData(f"{path}: changed since the study began ({what})", what)
        return dataclasses.replace(dataset, name=self.manifest["data_name"],
                                   target_name=self.manifest.get("target_name") or "y")

    def baselines(self) -> dict:
        return self.read_json("baselines.json", default={})

    def check_records(self):
        """Its JSON records read back: a damaged one refuses a command before it takes the lock."""
        self.baselines(), self.read_json("export.json"), self.test_uses()

    def read_json(self, name: str, default=None):
        """One of the study's JSON records (a mapping), `default` where there is none yet; a
        damaged or hand-edited one is a one-line `StudyError` naming the file."""
        path = self.directory / name
        if not path.is_file():
            return default
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"{path}: corrupted ({exc})") from None
        if not isinstance(value, dict):
            raise StudyError(f"{path}: corrupted (not a mapping)")
        return value

    def test_uses(self, optuna_study=None) -> list:
        """Every time the test part was scored: when, which trial, where it went, the score.
        With the study's Optuna storage, where it is shared, other machines' looks too."""
        path = self.directory / TEST_USES
        try:
            uses = json.loads(path.read_text()) if path.is_file() else []
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"{path}: corrupted ({exc})") from None
        if not isinstance(uses, list):
            raise StudyError(f"{path}: corrupted (not a list of uses)")
        if optuna_study is not None and self.manifest.get("storage"):
            here = {use.get("id") for use in uses if isinstance(use, dict)}
            uses = sorted([*uses, *(use for key, use in optuna_study.user_attrs.items()
                                    if key.startswith(SHARED_TEST_USE) and use.get("id") not in here)],
                          key=_recorded_at)
        return uses

    def test_uses_and_exports(self, optuna_study=None) -> list:
        """test_uses, each with `export_gone`: True where this machine's record names an export
        that is not there (the command stopped before writing it, or it was moved since). Looks
        that other machines recorded through the storage are not checked: their paths are theirs."""
        local = {use.get("id") for use in self.test_uses() if isinstance(use, dict)}
        return [{**use, "export_gone": use.get("id") in local
                 and not (self.directory / use.get("export", "") / "manifest.json").is_file()}
                for use in self.test_uses(optuna_study)]

    def record_test_use(self, *, trial: int, metric: str, test: dict, destination, best: bool, optuna_study=None):
        host = socket.gethostname()
        use = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trial": int(trial), "best": bool(best),
               "metric": metric, "score": test["score"], "low": test["low"], "high": test["high"],
               "export": self._where(destination), "id": f"{host}:{os.getpid()}:{time.time_ns()}"}
        atomic_write(self.directory / TEST_USES, json.dumps([*self.test_uses(), use], indent=2))
        if optuna_study is not None and self.manifest.get("storage"):
            # A shared storage: every machine's leaderboard counts this look (a joiner's export
            # was a second look that the run's leaderboard called "used once").
            try:
                optuna_study.set_user_attr(SHARED_TEST_USE + use["id"],
                                           {**use, "export": f"{host}:{Path(destination).absolute()}"})
            except Exception as exc:  # the export still goes ahead; the look is recorded here
                print(f"note: this look at the test part is recorded in {self.directory / TEST_USES} only: the "
                      f"storage refused it ({type(exc).__name__})", file=sys.stderr)

    def _where(self, path) -> str:
        """A path as everyone who reads the study can follow it: relative to the study inside it
        (it moves with the study), else absolute (not relative to whoever ran the command)."""
        path = Path(path).absolute()
        try:
            return str(path.relative_to(self.directory.absolute()))
        except ValueError:
            return str(path)

    def write_json(self, name: str, value: dict):
        atomic_write(self.directory / name, json.dumps(value, indent=2, default=str))


def open_study(directory) -> Study:
    directory = Path(directory)
    path = directory / "manifest.json"
    try:
        if directory.is_file():  # e.g. STUDY/manifest.json or STUDY/export/manifest.json
            raise StudyError(f"{directory}: a file, not a study directory; give the folder that holds the study")
        if not path.is_file():
            raise StudyError(f"{directory}: not a study directory (no manifest.json)")
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # UnicodeDecodeError: not text at all
        raise StudyError(f"{path}: corrupted manifest ({exc})") from None
    except OSError as exc:  # e.g. another user's study without read permission
        raise StudyError(f"{exc.filename or path}: cannot be read ({exc.strerror or exc})") from None
    if isinstance(manifest, dict) and "format_version" in manifest:
        raise StudyError(f"{directory}: an exported encoder, not a study directory"
                         + (f" (its study: {manifest['study']})" if manifest.get("study") else ""))
    if isinstance(manifest, dict) and "manifest_version" not in manifest and "data_name" not in manifest:
        raise StudyError(f"{directory}: not a study directory (its manifest.json is not a study's)")
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        version = manifest.get("manifest_version") if isinstance(manifest, dict) else None
        raise StudyError(f"{path}: manifest_version {version!r} is not supported")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:  # hand-edited or cut short: say so, rather than fail later on the first key read
        raise StudyError(f"{path}: corrupted manifest (no {', '.join(map(repr, missing))})")
    for key, types in REQUIRED_KEYS.items():
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise StudyError(f"{path}: corrupted manifest ({key}={value!r} is not "
                             f"{' or '.join(t.__name__.replace('NoneType', 'null') for t in types)})")
    _check_values(path, manifest)
    return Study(directory, manifest)


def _check_values(path, manifest: dict):
    """Values a hand edit could break, refused as the command line refuses them (a bad test_size
    ended in scikit-learn's traceback, folds 1 in an endless loop)."""
    from search.backends import BACKENDS

    try:
        if manifest["folds"] < 2:
            raise SettingsError(f"folds: must be at least 2, got {manifest['folds']}")
        if manifest["backend"] not in BACKENDS:
            raise SettingsError(f"backend: unknown backend {manifest['backend']!r} (known: {', '.join(BACKENDS)})")
        if manifest.get("keras_backend") not in (None, *KERAS_BACKENDS):
            raise SettingsError(f"keras_backend: {manifest['keras_backend']!r} is not one of {', '.join(KERAS_BACKENDS)}")
        if not isinstance(manifest.get("storage"), (str, type(None))):
            raise SettingsError(f"storage: must be a URL or journal:PATH, got {manifest['storage']!r}")
        # The backend's own options (a hand-edited algorithm or gpus), less the storage's
        # reachability: a shared folder not mounted here is not a corrupted manifest.
        options = OPTIONS[manifest["backend"]]
        for settings in (StudySpec, Budget, options):
            settings.from_manifest({**manifest, "storage": None} if settings is options else manifest)
    except SettingsError as exc:
        raise StudyError(f"{path}: corrupted manifest ({exc})") from None


def study_around(path) -> Path | None:
    """The study directory that holds `path` (or is it), resolved; None where there is none."""
    for folder in (Path(path).resolve(), *Path(path).resolve().parents):
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and "manifest_version" in manifest:
            return folder
    return None


def _recorded_at(use) -> int:
    """When a test use was recorded, in ns since the epoch (the end of its id; older uses,
    without one, were all recorded on this machine before any in a shared storage)."""
    return int(use["id"].rsplit(":", 1)[1]) if isinstance(use, dict) and "id" in use else 0


def is_join_directory(study) -> bool:
    """A worker's directory made by `join`: its commands leave the export to the study's run.
    Marked since 2026-12-02 ("joined", False in a run's own); an older one is known by a
    shared storage without the baselines or export a run writes first and last."""
    joined = study.manifest.get("joined")
    if joined is not None:
        return bool(joined)
    return bool(study.manifest.get("storage")) and not any(
        (study.directory / name).exists() for name in ("baselines.json", "export.json"))


# What every command reads from a study's manifest (every run writes them), and its JSON types.
REQUIRED_KEYS = {
    "data": (str,), "target": (str, type(None)), "seed": (int,), "test_size": (int, float), "metric": (str,),
    "probe": (str,), "folds": (int,), "split_hash": (str,), "space_digest": (str,), "backend": (str,),
    "data_kind": (str,),
}


def check_same_study(directory, settings: dict, problem, space) -> Study | None:
    """The existing study in `directory` if it measures what these settings measure (a
    re-run continues it), None if there is none yet; `StudyError` if it measures something
    else. Reads only, so a refused command changes nothing."""
    directory = Path(directory)
    if not (directory / "manifest.json").exists():
        # (the lock, and in-memory data written by a run killed before its manifest)
        if directory.exists() and any(p.name not in (LOCK_NAME, DATA_FILE) and not p.name.startswith(f".{DATA_FILE}.tmp-")
                                      for p in directory.iterdir()):
            raise StudyError(f"{directory}: exists and is not a study directory")
        return None
    study = open_study(directory)
    identity = _identity(settings, problem, space)
    for key in IDENTITY_KEYS:
        if key == "data" and study.manifest["data"].startswith(IN_MEMORY) and not identity["data"].startswith(IN_MEMORY):
            if is_file_name(identity["data"]) and problem.split_hash() == study.manifest["split_hash"]:
                continue  # the same arrays, from a file (the study's own copy, DIR/data.npz)
            raise StudyError(f"{directory}: its data came from Python arrays, not {identity['data']}; continue "
                             f"it with --data {directory / DATA_FILE} (their copy) or "
                             f"`{suggested_command('resume', directory)}`")
        if key == "data" and study.manifest["data"] != identity["data"] and identity["data"].startswith(IN_MEMORY):
            raise OtherStudy(f"{directory}: study was made with other data ({study.manifest['data']}; "
                             f"this data: {identity['data']}); use another study directory")
        if key == "data" and os.path.abspath(study.manifest["data"]) == identity["data"]:
            continue  # a study made before files were stored by absolute path, run from the same folder
        if key == "data" and is_file_name(study.manifest["data"]) and is_file_name(identity["data"]) \
                and problem.split_hash() == study.manifest["split_hash"]:
            continue  # the same file, moved: its contents and split are the study's
        if key == "space_digest" and study.manifest.get(key) != identity[key]:
            raise OtherStudy(f"{directory}: {_other_space(study.manifest, settings, space)}; "
                             "use another study directory")
        if study.manifest.get(key) != identity[key]:
            named = "cv" if key == "folds" else key  # as the setting is given
            raise OtherStudy(
                f"{directory}: study was made with {named}={study.manifest.get(key)!r}, "
                f"not {identity[key]!r}; use another study directory"
            )
    if problem.split_hash() != study.manifest["split_hash"]:  # the same file name, other contents
        raise StudyError(f"{directory}: its data {study.manifest['data']} changed since the study began "
                         f"(split hash {problem.split_hash()}, study: {study.manifest['split_hash']}); "
                         "restore it or use another study directory")
    return study


def _other_space(manifest: dict, settings: dict, space) -> str:
    """How the space of a re-run differs from the study's, in the words the user set it with
    (the digest they never typed said nothing)."""
    scale = manifest.get("scale", 1.0)  # (studies made before it was recorded: 1, as Study.space reads them)
    if scale != settings.get("scale", 1.0):
        return f"study was made with scale={scale:g}, not {settings.get('scale', 1.0):g}"
    if manifest.get("space_name") and manifest["space_name"] != space.name:
        return f"study was made with space {manifest['space_name']!r}, not {space.name!r}"
    if "space_source" not in manifest:  # (studies made before it was recorded)
        return "its space changed since the study began"
    was, now = _space_origin(manifest["space_source"]), _space_origin(None if space.from_python else space.source)
    if was != now:
        return f"study was made with {was}, not {now}"
    return f"its {was} changed since the study began"


def _space_origin(source) -> str:
    return "space given as a dict (space=...)" if source is None else f"space file {source}"


def _identity(settings, problem, space) -> dict:
    return {
        "data": settings["data"],
        "target": settings["target"],
        "seed": settings["seed"],
        "test_size": settings["test_size"],
        "metric": problem.metric,
        "folds": problem.folds,  # the probe's CV folds: the space's probe.cv, or cv= given
        "space_digest": space.digest,
        "subsample": settings.get("subsample"),
        "storage": settings.get("storage"),  # the trials live there; another storage is another study
    }


def create_or_check(directory, settings: dict, space_given, problem, space) -> Study:
    """A new study directory, or the existing one when it measures the same thing.
    `space_given`: the space as the user gave it (a name, a file or a dict), kept as space.yaml."""
    directory = Path(directory)
    existing = check_same_study(directory, settings, problem, space)
    if existing is not None:
        return existing
    identity = _identity(settings, problem, space)
    directory.mkdir(parents=True, exist_ok=True)
    if settings["data"].startswith(IN_MEMORY):  # first, and before the manifest: a study never lacks its data
        staging = directory / f".{DATA_FILE}.tmp-{os.getpid()}"
        save_npz(staging, problem.dataset)
        os.replace(staging, directory / DATA_FILE)
    (directory / "space.yaml").write_text(space_text(space_given), encoding="utf-8")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **identity,
        "space_name": space.name,
        "space_source": None if space.from_python else str(space.source),
        "study_name": settings.get("study_name"),
        "joined": False,  # a run's own directory (`join` marks its worker's True)
        "data_name": problem.dataset.name,
        "target_name": problem.dataset.target_name,
        "data_kind": problem.dataset.kind,
        "data_shape": list(problem.dataset.shape),
        "n_rows": int(len(problem.dataset.y)),
        "n_search_rows": int(len(problem.search_rows)),
        "n_test_rows": int(len(problem.test_rows)),
        "n_trial_rows": int(len(problem.trial_rows)),
        "split_hash": problem.split_hash(),
        "probe": problem.probe,
        "trials": settings["trials"],
        "timeout": settings["timeout"],
        "backend": settings["backend"],
        "workers": settings["workers"],
        "data_dir": settings["data_dir"],
        "scale": settings["scale"],
        "packages": package_versions(),  # with the tuner's version, added by engine.run on every run
        "keras_backend": keras_backend_name(),
    }
    study = Study(directory, manifest)
    study.write_json("manifest.json", manifest)
    return study


def tuner_version(backend: str) -> dict:
    """The version of the tuner that runs a ray or kerastuner study (optuna's is always listed)."""
    from importlib.metadata import PackageNotFoundError, version

    name = {"ray": "ray", "kerastuner": "keras-tuner"}.get(backend)
    try:
        return {name: version(name)} if name else {}
    except PackageNotFoundError:
        return {}


def keras_backend_name() -> str:
    """The Keras backend this process runs (or will run once Keras is imported)."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def atomic_write(path: Path, text: str):
    """Writes `path` whole or not at all: a write cut short leaves the old file and no staging copy.
    In a shared folder the file keeps its permissions, and the same text is not written again
    (a new file would take the writer's umask: a group-writable manifest became 644)."""
    try:
        if path.read_text() == text:
            return
        mode = stat.S_IMODE(path.stat().st_mode)
    except (OSError, UnicodeDecodeError):
        mode = None
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        staging.write_text(text)
        if mode is not None:
            os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
