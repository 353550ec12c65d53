"""Writing and loading an exported encoder directory.

An export holds
    manifest.json       config, scores, data shape, package versions, seeds, and the SHA-256
                        of every other file
    encoder.keras       the bare Keras encoder (Keras' own format, no pickled code)
    autoencoder.keras   the whole autoencoder (for `reconstruct`)
    preprocessing.npz   the fitted input scaler's arrays (NumPy, loaded with allow_pickle=False)
    encoder.joblib      the fitted transformer as a pickle (convenient, but unpickling runs code)

`load_encoder` rebuilds the transformer from the manifest's parameters, the two `.keras` files
(loaded in Keras' safe mode) and the scaler's arrays: nothing pickled is executed, so it is safe
for exports received from others. `load_encoder(..., allow_pickle=True)` unpickles
`encoder.joblib` instead, for exports you made yourself. Either way every file's hash is
checked first, and a file the manifest does not list is refused.

The export is written under a temporary name and renamed into place, so a crash leaves either
the old export or the new one, never half of one. It only ever replaces an export directory:
a path holding anything else is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from encoderkit.errors import ExportError

MANIFEST = "manifest.json"
FILES = ("encoder.joblib", "encoder.keras", "autoencoder.keras", "preprocessing.npz", MANIFEST)
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 (before 2026-11-30): pickle and encoder.keras only, no hashes
# Attributes a fitted transformer carries besides its models and scaler (JSON in the manifest).
STATE = ("n_features_in_", "feature_names_in_", "n_features_out_", "sample_shape_", "history_", "fit_seconds_")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("encoderkit", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "scikit-learn", "numpy", "optuna"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def check_destination(directory):
    """An export may go to a path that does not exist, an empty directory, or an existing
    export directory (replaced as a whole); anything else would lose the user's files."""
    directory = Path(directory)
    inside = export_around(directory)
    if inside is not None:  # its hash check would refuse the export it is in
        raise ExportError(f"{directory}: inside the export {inside}; choose a path outside it")
    if directory.is_symlink():  # replaced by a folder, its target left stale; a dangling one failed after the refit
        raise ExportError(f"{directory}: a symbolic link (to {os.readlink(directory)}); nothing written (an export "
                          "is written as a folder: remove the link, or export -o to a new path and point it there)")
    if not directory.exists():
        parent = next(p for p in directory.absolute().parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ExportError(f"{directory}: cannot be created ({parent} is not a writable directory)")
        _check_can_stage_in(directory, parent)
        return
    if not directory.is_dir():
        raise ExportError(f"{directory}: is a file; an export is written only to a new path or over an export directory")
    names = {p.name for p in directory.iterdir()}
    if not names:
        return
    if MANIFEST not in names or not _is_export_manifest(directory / MANIFEST):
        raise ExportError(f"{directory}: exists and is not an export directory; nothing written (choose a new path)")
    foreign = sorted(names - set(FILES))
    if foreign:
        raise ExportError(f"{directory}: holds files that are not part of an export ({', '.join(foreign[:3])}); "
                          "nothing written (move them out of it, or export to a new path)")
    if not os.access(directory.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{directory}: cannot be replaced ({directory.parent} is not writable)")
    _check_can_stage_in(directory, directory.absolute().parent)
    if not os.access(directory, os.W_OK | os.X_OK):
        # Renaming it away would work, deleting its files would not: a read-only export is
        # someone's way of keeping it, and replacing it left a hidden .old copy behind.
        raise ExportError(f"{directory}: is read-only; nothing written (make it writable to replace it, "
                          "or choose a new path)")


def _check_can_stage_in(directory, folder):
    """Permissions do not tell everything (/proc, a full or read-only file system): the export
    is staged beside its destination, so make and remove a folder there, before any refit."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{directory.name}.check-", dir=folder))
    except OSError as exc:
        raise ExportError(f"{directory}: cannot be written ({exc.strerror or exc} in {folder})") from None


def save_export(directory, transformer, manifest: dict, before_publish=None) -> Path:
    """Writes the export atomically; an existing export at `directory` is replaced, any other
    existing path is refused (`check_destination`). `before_publish` is called once
    everything is staged, just before the rename (the search engine's crash tests kill the
    process there)."""
    import joblib
    import keras

    directory = Path(directory).absolute()  # `-o .` has a name to stage beside
    check_destination(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; an export follows the umask
        joblib.dump(transformer, staging / "encoder.joblib")
        transformer.encoder_.save(staging / "encoder.keras")
        transformer.autoencoder_.save(staging / "autoencoder.keras")
        np.savez(staging / "preprocessing.npz", **_scaler_arrays(transformer.scaler_))
        manifest = {
            "format_version": FORMAT_VERSION,
            "keras_backend": keras.backend.backend(),
            "packages": package_versions(),
            **manifest,
            "transformer": _transformer_record(transformer),
            "files": {name: _sha256(staging / name) for name in FILES if name != MANIFEST},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        _fsync_tree(staging)
        if before_publish is not None:
            before_publish()
        retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            directory.rename(retired)
        staging.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        if retired.exists() and not directory.exists():  # put the old export back
            retired.rename(directory)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def remove_leftovers(directory) -> list[Path]:
    """Cleans up after a `save_export` killed mid-way: its staging copies are deleted; a
    retired old export is put back if it was killed between the two renames (nothing at
    `directory`), else deleted."""
    directory = Path(directory).absolute()
    retired = sorted(directory.parent.glob(f".{directory.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if retired and not directory.exists():
        retired.pop().rename(directory)
    found = [*directory.parent.glob(f".{directory.name}.tmp-*"), *retired]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found


def read_manifest(directory) -> dict:
    """An export's manifest.json, checked as load_encoder checks it (format, a folder, not a
    study's): what the encoder is and how it scored (see README, "What an export records")."""
    try:
        return _read_manifest(Path(directory).expanduser())  # the paths load_encoder takes
    except OSError as exc:  # e.g. a folder or file without read permission
        raise ExportError(f"{exc.filename or directory}: cannot be read ({exc.strerror or exc})") from None


def _read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if Path(directory).is_file():
        raise ExportError(f"{directory}: a file; load_encoder takes the export's folder"
                          f"{f' ({Path(directory).parent})' if Path(directory).name == MANIFEST else ''}")
    if not Path(directory).is_dir():
        raise ExportError(f"{directory}: no such folder")
    if not path.is_file():
        raise ExportError(f"{directory}: not an export (no manifest.json){_exports_inside(directory)}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: corrupted manifest ({exc})") from None
    inside = _exports_inside(directory) if isinstance(manifest, dict) and "format_version" not in manifest else ""
    if inside:  # another tool's manifest, such as a search study's: its export is a folder inside
        raise ExportError(f"{directory}: not an export{inside}")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if isinstance(version, bool) or version not in READABLE_FORMATS:  # True == 1 in Python
        raise ExportError(
            f"{path}: format_version {version!r} is not supported "
            f"(this encoderkit reads {' and '.join(map(str, READABLE_FORMATS))})"
        )
    return manifest


def _exports_inside(directory) -> str:
    """Where a folder holds exports one level down (a study's export/): '; its export: PATH'."""
    found = sorted(str(p.parent) for p in Path(directory).glob(f"*/{MANIFEST}") if _is_export_manifest(p))
    if not found:
        return ""
    return f"; {'the export inside' if len(found) == 1 else 'exports inside'}: {', '.join(found[:3])}"


def load_encoder(directory, *, allow_pickle: bool = False):
    """Returns the fitted `AutoencoderTransformer` stored in an export directory.

    By default the transformer is rebuilt from the manifest, Keras' safe-mode `.keras` files
    and NumPy arrays: no pickled code runs, so this is safe for an export from someone else.
    `allow_pickle=True` unpickles `encoder.joblib` instead (only for exports you trust; it is
    the only way to read a format-1 export). Needs only encoderkit and a Keras backend; raises
    `ExportError` for a missing, tampered, corrupted or incompatible export."""
    from encoderkit.quiet import import_keras_quietly

    import_keras_quietly()
    directory = Path(directory).expanduser()
    try:
        manifest = read_manifest(directory)
        _check_versions(directory, manifest.get("packages", {}))
        _check_files(directory, manifest)
        if allow_pickle:
            return _unpickle(directory / "encoder.joblib")
        if manifest["format_version"] < 2:
            raise ExportError(f"{directory}: a format-1 export holds only a pickle; load it with "
                              "allow_pickle=True if you trust where it came from")
        return _rebuild(directory, manifest)
    except OSError as exc:  # e.g. a file without read permission: an ExportError as the rest
        raise ExportError(f"{exc.filename or directory}: cannot be read ({exc.strerror or exc})") from None


def _check_files(directory: Path, manifest: dict):
    """Every file the manifest lists has its recorded hash, and nothing else is there."""
    listed = manifest.get("files")
    if listed is not None and not (isinstance(listed, dict) and all(isinstance(v, str) for v in listed.values())):
        raise ExportError(f"{directory / MANIFEST}: 'files' must map file names to hashes")
    if listed is None and manifest["format_version"] >= 2:
        raise ExportError(f"{directory / MANIFEST}: lists no files, though format {manifest['format_version']} "
                          "records each file's hash; corrupted or edited")
    if listed is None:  # format 1 recorded no hashes
        missing = [n for n in ("encoder.joblib",) if not (directory / n).is_file()]
        if missing:
            raise ExportError(f"{directory}: export is incomplete (no {missing[0]})")
        return
    for name, digest in listed.items():
        path = directory / name
        if name not in FILES or "/" in name:
            raise ExportError(f"{directory}: the manifest lists an unexpected file {name!r}")
        if not path.is_file():
            raise ExportError(f"{directory}: export is incomplete (no {name})")
        if _sha256(path) != digest:
            raise ExportError(f"{path}: does not match the hash in the manifest (changed or damaged since export)")
    extra = sorted(p.name for p in directory.iterdir()
                   if p.name != MANIFEST and p.name not in listed and not _is_os_clutter(p.name))
    if extra:
        raise ExportError(f"{directory}: holds {extra[0]!r}, which its manifest does not list; refused (an export "
                          "holds only the files it lists: move it out)")


def _is_os_clutter(name: str) -> bool:
    """Files a desktop adds to a folder it shows or unpacks (Finder, Explorer, macOS' zip):
    never read, so an export that gained them on its way to its recipient still loads."""
    return name in (".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX") or name.startswith("._")


def _unpickle(path: Path):
    import joblib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn's InconsistentVersionWarning
            transformer = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many ways; all mean "corrupted"
        raise ExportError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not hasattr(transformer, "transform"):
        raise ExportError(f"{path}: holds a {type(transformer).__name__}, not a transformer")
    return transformer


def _rebuild(directory: Path, manifest: dict):
    """The fitted transformer from its parts, executing no pickled code."""
    import keras

    import encoderkit.families.layers  # noqa: F401  (registers the custom layers safe mode may load)
    from encoderkit.transformer import SCALER_CLASSES, AutoencoderTransformer

    record = manifest.get("transformer")
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise ExportError(f"{directory / MANIFEST}: no transformer parameters")
    try:
        params = dict(record["params"])
        if params.get("input_shape") is not None:
            params["input_shape"] = tuple(params["input_shape"])
        transformer = AutoencoderTransformer(**params)
        with np.load(directory / "preprocessing.npz", allow_pickle=False) as arrays:
            scaler = SCALER_CLASSES[transformer.scaling](**record["scaler_params"])
            transformer.scaler_ = _scaler_from_arrays(scaler, arrays)
        for name in STATE:
            if name in record["state"]:
                value = record["state"][name]
                if name == "feature_names_in_":
                    value = np.asarray(value, dtype=object)
                elif name == "sample_shape_" and value is not None:
                    value = tuple(value)  # JSON gave a list; fitted, it is a tuple
                setattr(transformer, name, value)
        transformer.encoder_ = _load_keras(directory / "encoder.keras")
        transformer.autoencoder_ = _load_keras(directory / "autoencoder.keras")
        transformer._validate_params()  # a parameter edited into what the class refuses
    except ExportError:
        raise
    except Exception as exc:  # a damaged part of any kind
        raise ExportError(f"{directory}: cannot be rebuilt ({type(exc).__name__}: {_first_line(exc)})") from None
    _check_consistent(directory / MANIFEST, transformer)
    return transformer


def _load_keras(path: Path):
    """A `.keras` file in safe mode; Keras says "File not found" of one that is there but is
    not a zip archive."""
    import zipfile

    import keras

    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path}: damaged (not a .keras zip archive)")
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _check_consistent(path: Path, transformer):
    """The manifest's numbers agree with the models they describe. The hashes catch a damaged
    file, not an edited manifest, and a mismatch would otherwise surface only at transform,
    as a shape error far from its cause."""
    n_inputs = int(np.prod(transformer.encoder_.inputs[0].shape[1:]))
    n_codes = transformer._n_codes()
    shape = transformer.input_shape or getattr(transformer, "sample_shape_", None)
    names = getattr(transformer, "feature_names_in_", None)
    width = n_codes + (n_inputs if transformer.include_input else 0)
    checks = [
        ("params.code_size", transformer.code_size, n_codes, "codes the encoder gives"),
        ("state.n_features_in_", getattr(transformer, "n_features_in_", None), n_inputs, "inputs the encoder takes"),
        ("state.n_features_out_", getattr(transformer, "n_features_out_", None), width, "columns transform gives"),
        ("params.input_shape or state.sample_shape_", int(np.prod(shape)) if shape else n_inputs, n_inputs,
         "values per sample the encoder takes"),
        ("state.feature_names_in_", n_inputs if names is None else len(names), n_inputs, "inputs (as names)"),
        ("scaler", getattr(transformer.scaler_, "n_features_in_", n_inputs), n_inputs, "inputs the encoder takes"),
    ]
    for key, value, expected, meaning in checks:
        if isinstance(value, bool) or value != expected:
            raise ExportError(f"{path}: transformer {key} gives {value!r}, but the models have {expected} "
                              f"{meaning}; the manifest was edited or mixed with another export's files")
    try:  # an array missing from preprocessing.npz (hash and all replaced) failed at the first transform
        transformer.scaler_.transform(np.zeros((1, n_inputs)))
    except Exception as exc:
        raise ExportError(f"{path.parent / 'preprocessing.npz'}: its {type(transformer.scaler_).__name__} cannot "
                          f"scale a row ({type(exc).__name__}: {_first_line(exc)}); damaged or mixed with another "
                          "export's files") from None


def _transformer_record(transformer) -> dict:
    params = transformer.get_params()
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None  # a RandomState object: its seed was already used by fit
    state = {}
    for name in STATE:
        if hasattr(transformer, name):
            value = getattr(transformer, name)
            state[name] = value.tolist() if isinstance(value, np.ndarray) else value
    return {"params": params, "scaler_params": transformer.scaler_.get_params(), "state": state}


def _scaler_arrays(scaler) -> dict:
    """The fitted attributes (ending in `_`) of an sklearn scaler as plain arrays."""
    arrays = {}
    for name, value in vars(scaler).items():
        if name.endswith("_") and not name.startswith("_"):
            array = np.asarray(value)
            if array.dtype == object:
                array = array.astype(str)
            arrays[name] = array
    return arrays


def _scaler_from_arrays(scaler, arrays):
    """Only fitted attributes (`name_`): an array may not replace a method or a parameter."""
    for name in arrays.files:
        if not name.endswith("_") or name.startswith("_") or callable(getattr(type(scaler), name, None)):
            raise ExportError(f"preprocessing.npz: {name!r} is not a fitted attribute of {type(scaler).__name__}")
        value = arrays[name]
        if name == "feature_names_in_":
            value = value.astype(object)
        elif value.ndim == 0:
            value = value.item()
        setattr(scaler, name, value)
    return scaler


def export_around(path) -> Path | None:
    """The export folder that holds `path` (one of its parents), or None: a file written into
    an export makes it refuse to load (its manifest lists every file)."""
    return next((p for p in Path(os.path.abspath(path)).parents if _is_export_manifest(p / MANIFEST)), None)


def _is_export_manifest(path: Path) -> bool:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest


def _check_versions(directory, saved):
    import keras

    wanted = saved.get("keras") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not isinstance(wanted, (str, type(None))):
        raise ExportError(f"{directory / MANIFEST}: 'packages' must map package names to versions")
    if wanted and wanted.split(".")[0] != keras.__version__.split(".")[0]:
        raise ExportError(
            f"{directory}: exported with keras {wanted}, this environment has keras {keras.__version__}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _fsync_tree(directory: Path):
    """Flushes the staged files to disk before the rename makes them visible."""
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
