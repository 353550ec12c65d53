"""Writing and loading an exported encoder directory.

An export holds `encoder.joblib` (the fitted transformer), `encoder.keras` (the bare Keras
encoder, for people who want only the network) and `manifest.json` (config, scores, data
shape, package versions, seeds). It is written under a temporary name and renamed into place,
so a crash leaves either the old export or the new one, never half of one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from encoderkit.errors import ExportError

FILES = ("encoder.joblib", "encoder.keras", "manifest.json")
FORMAT_VERSION = 1


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("encoderkit", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "scikit-learn", "numpy", "optuna"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def save_export(directory, transformer, manifest: dict, before_publish=None) -> Path:
    """Writes the export atomically; an existing export at `directory` is replaced.
    `before_publish` is called once everything is staged, just before the rename (the search
    engine's crash tests kill the process there)."""
    import joblib
    import keras

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        joblib.dump(transformer, staging / "encoder.joblib")
        transformer.encoder_.save(staging / "encoder.keras")
        manifest = {
            "format_version": FORMAT_VERSION,
            "keras_backend": keras.backend.backend(),
            "packages": package_versions(),
            **manifest,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _fsync_tree(staging)
        if before_publish is not None:
            before_publish()
        if directory.exists():
            retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def remove_leftovers(directory) -> list[Path]:
    """Deletes the staging and retired copies a killed `save_export` left next to `directory`."""
    directory = Path(directory)
    found = [*directory.parent.glob(f".{directory.name}.tmp-*"), *directory.parent.glob(f".{directory.name}.old-*")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found


def read_manifest(directory) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{directory}: not an export (no manifest.json)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: corrupted manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{path}: format_version {manifest.get('format_version') if isinstance(manifest, dict) else None!r} "
            f"is not supported (this encoderkit reads {FORMAT_VERSION})"
        )
    return manifest


def load_encoder(directory):
    """Returns the fitted `AutoencoderTransformer` stored in an export directory.

    Needs only encoderkit and Keras' backend; raises `ExportError` for a missing, corrupted or
    incompatible export."""
    import joblib

    directory = Path(directory)
    manifest = read_manifest(directory)
    _check_versions(directory, manifest.get("packages", {}))
    path = directory / "encoder.joblib"
    if not path.is_file():
        raise ExportError(f"{directory}: export is incomplete (no encoder.joblib)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn's InconsistentVersionWarning
            transformer = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many ways; all mean "corrupted"
        raise ExportError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not hasattr(transformer, "transform"):
        raise ExportError(f"{path}: holds a {type(transformer).__name__}, not a transformer")
    return transformer


def _check_versions(directory, saved: dict):
    import keras

    wanted = saved.get("keras")
    if wanted and wanted.split(".")[0] != keras.__version__.split(".")[0]:
        raise ExportError(
            f"{directory}: exported with keras {wanted}, this environment has keras {keras.__version__}"
        )


def _fsync_tree(directory: Path):
    """Flushes the staged files to disk before the rename makes them visible."""
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
