import json
import os
import subprocess
import sys

import numpy as np
import pytest

from encoderkit import AutoencoderTransformer, ExportError, load_encoder
from encoderkit.export import save_export


@pytest.fixture
def exported(small_digits, tmp_path):
    X, _ = small_digits
    transformer = AutoencoderTransformer(code_size=4, epochs=2, random_state=0).fit(X)
    save_export(tmp_path / "export", transformer, {"trial": 0})
    return tmp_path / "export", transformer, X


def test_export_holds_its_files_with_their_hashes_and_loads_both_ways(exported):
    directory, transformer, X = exported
    assert sorted(p.name for p in directory.iterdir()) == [
        "autoencoder.keras", "encoder.joblib", "encoder.keras", "manifest.json", "preprocessing.npz"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["trial"] == 0 and manifest["packages"]["keras"]
    assert sorted(manifest["files"]) == ["autoencoder.keras", "encoder.joblib", "encoder.keras", "preprocessing.npz"]
    for loaded in (load_encoder(directory), load_encoder(directory, allow_pickle=True)):
        np.testing.assert_array_equal(loaded.transform(X), transformer.transform(X))
        np.testing.assert_allclose(loaded.reconstruct(X[:20]), transformer.reconstruct(X[:20]), rtol=1e-6)
        assert loaded.get_params() == transformer.get_params()


@pytest.mark.parametrize("family, scaling, include_input", [
    ("denoising", "quantile", True), ("vae", "standard", False), ("conv2d", "minmax", False)])
def test_the_safe_rebuild_loses_nothing_for_each_family_and_scaling(small_digits, tmp_path, family, scaling, include_input):
    """No pickle: the transformer rebuilt from the manifest, `.keras` files (safe mode) and the
    scaler's arrays transforms, reconstructs and names its features like the fitted one."""
    import pandas as pd

    X, _ = small_digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    fitted = AutoencoderTransformer(family=family, code_size=3, epochs=1, random_state=0, scaling=scaling,
                                    include_input=include_input, input_shape=(8, 8, 1)).fit(frame)
    loaded = load_encoder(save_export(tmp_path / "export", fitted, {"trial": 0}))
    np.testing.assert_allclose(loaded.transform(frame), fitted.transform(frame), rtol=1e-6)
    np.testing.assert_allclose(loaded.reconstruct(frame), fitted.reconstruct(frame), rtol=1e-5, atol=1e-6)
    # A frame's reconstruction is a frame of the fitted columns: it lines up by name with X.
    shuffled = frame.iloc[::-1, ::-1]
    rebuilt = loaded.reconstruct(shuffled)
    assert list(rebuilt.columns) == list(frame.columns) and list(rebuilt.index) == list(shuffled.index)
    np.testing.assert_allclose((shuffled - rebuilt)[frame.columns], frame.iloc[::-1] - loaded.reconstruct(frame.iloc[::-1]),
                               rtol=1e-5, atol=1e-5)
    assert list(loaded.get_feature_names_out()) == list(fitted.get_feature_names_out())
    assert list(loaded.feature_names_in_) == list(frame.columns)
    assert loaded.history_ == fitted.history_ and loaded.get_params() == fitted.get_params()


def test_the_default_load_runs_no_pickled_code(exported, tmp_path):
    """An export whose pickle was swapped for one that runs code (its hash updated too, as a
    sender could): the default load never unpickles it."""
    import hashlib
    import pickle

    directory, transformer, X = exported
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (directory / "encoder.joblib").write_bytes(pickle.dumps(Payload()))
    _edit_manifest(directory, files={**json.loads((directory / "manifest.json").read_text())["files"],
                                     "encoder.joblib": hashlib.sha256((directory / "encoder.joblib").read_bytes()).hexdigest()})
    np.testing.assert_array_equal(load_encoder(directory).transform(X), transformer.transform(X))
    assert not marker.exists()


def test_an_export_directory_follows_the_umask(exported):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(exported[0].stat().st_mode) == 0o777 & ~mask


def test_an_export_is_not_written_inside_another(exported):
    from encoderkit.export import check_destination

    with pytest.raises(ExportError, match=f"{exported[0] / 'sub'}: inside the export {exported[0]}; choose a path"):
        check_destination(exported[0] / "sub")  # the outer export's hash check would refuse it


@pytest.mark.parametrize("prepare, message", [
    (lambda d: d.write_text("mine"), "is a file"),
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), "not an export directory"),
    (lambda d: (d.mkdir(), (d / "manifest.json").write_text('{"manifest_version": 1}')), "not an export directory"),
])
def test_save_export_refuses_to_replace_anything_but_an_export(small_digits, tmp_path, prepare, message):
    X, _ = small_digits
    target = tmp_path / "out"
    prepare(target)
    before = sorted((p.name, p.read_bytes()) for p in ([target] if target.is_file() else target.iterdir()))
    fitted = AutoencoderTransformer(code_size=2, epochs=1, random_state=0).fit(X)
    with pytest.raises(ExportError, match=message):
        save_export(target, fitted, {"trial": 0})
    after = sorted((p.name, p.read_bytes()) for p in ([target] if target.is_file() else target.iterdir()))
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_loading_fitting_and_transforming_print_nothing(exported, backend):
    """No absl/oneDNN start-up lines or retracing warnings from the library; under JAX, seeding
    imports TensorFlow (keras.utils.set_random_seed seeds it wherever it is installed)."""
    import os

    pytest.importorskip(backend)
    code = f"""
from sklearn.datasets import load_digits
from encoderkit import AutoencoderTransformer, load_encoder
from encoderkit.softmax_probe import SoftmaxProbe
X, y = load_digits(return_X_y=True)
load_encoder({str(exported[0])!r}).transform(X[:10])
for seed in range(7):
    AutoencoderTransformer(code_size=2, epochs=1, random_state=seed).fit(X[:100]).transform(X[:5])
SoftmaxProbe(steps=5).fit(X[:100], y[:100]).predict(X[:5])
"""
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "" and result.stdout == ""


def test_bare_keras_encoder_gives_the_same_codes(exported):
    import keras

    directory, transformer, X = exported
    encoder = keras.saving.load_model(directory / "encoder.keras")
    scaled = transformer.scaler_.transform(X).astype("float32")
    np.testing.assert_allclose(np.asarray(encoder(scaled)), transformer.transform(X), atol=1e-6)


def test_replacing_an_export_leaves_no_staging_directories(exported, small_digits):
    directory, _, X = exported
    other = AutoencoderTransformer(code_size=2, epochs=1, random_state=1).fit(X)
    save_export(directory, other, {"trial": 1})
    assert load_encoder(directory).transform(X).shape == (len(X), 2)
    assert [p.name for p in directory.parent.iterdir()] == ["export"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "corrupted manifest"),
        (lambda d: (d / "encoder.joblib").write_bytes(b"garbage"), "does not match the hash"),
        (lambda d: (d / "encoder.keras").write_bytes(b"garbage"), "does not match the hash"),
        (lambda d: (d / "preprocessing.npz").unlink(), "incomplete"),
        (lambda d: (d / "encoder.joblib").unlink(), "incomplete"),
        (lambda d: (d / "run_me.py").write_text("print(1)"), "does not list"),
        (lambda d: _edit_manifest(d, files={"../etc/passwd": "0"}), "unexpected file"),
        (lambda d: _edit_manifest(d, format_version=1, files=None), "allow_pickle=True"),
        (lambda d: _edit_manifest(d, files=["encoder.keras"]), "must map file names to hashes"),
        (lambda d: _edit_manifest(d, packages=["keras"]), "must map package names to versions"),
        (lambda d: _edit_manifest(d, format_version=99), "format_version 99"),
        (lambda d: _edit_manifest(d, packages={"keras": "2.15.0"}), "keras 2.15.0"),
        (lambda d: _edit_manifest(d, files=None), "lists no files, though format 2 records each file's hash"),
        (lambda d: _edit_manifest(d, format_version=True), "format_version True is not supported"),
        # An edited manifest whose files still match their hashes: refused at load, not at transform.
        (lambda d: _edit_transformer(d, "params", code_size=99), "params.code_size gives 99, but the models have 4 codes"),
        (lambda d: _edit_transformer(d, "params", code_size="eight"), "InvalidParameterError: The 'code_size'"),
        (lambda d: _edit_transformer(d, "params", family="bogus"), "InvalidParameterError: The 'family'"),
        (lambda d: _edit_transformer(d, "params", include_input=True), "state.n_features_out_ gives 4, but the models have 68"),
        (lambda d: _edit_transformer(d, "state", n_features_out_=3), "state.n_features_out_ gives 3"),
        (lambda d: _edit_transformer(d, "state", n_features_in_="64"), "state.n_features_in_ gives '64'"),
        (lambda d: _edit_transformer(d, "state", feature_names_in_=["a", "b"]), "state.feature_names_in_ gives 2"),
        (lambda d: _edit_transformer(d, "params", input_shape=[7, 7]), "input_shape or state.sample_shape_ gives 49"),
    ],
)
def test_damaged_or_incompatible_exports_raise_export_error(exported, damage, message):
    directory = exported[0]
    damage(directory)
    with pytest.raises(ExportError, match=message):
        load_encoder(directory)


def _edit_transformer(directory, part, **changes):
    record = json.loads((directory / "manifest.json").read_text())["transformer"]
    _edit_manifest(directory, transformer={**record, part: {**record[part], **changes}})


def test_folders_a_desktop_adds_do_not_block_loading_and_a_manifest_path_names_its_folder(exported):
    directory, transformer, X = exported
    for clutter in (".DS_Store", "._encoder.keras", "Thumbs.db"):  # Finder, macOS' zip, Explorer
        (directory / clutter).write_bytes(b"\0\1")
    np.testing.assert_array_equal(load_encoder(directory).transform(X[:5]), transformer.transform(X[:5]))
    with pytest.raises(ExportError, match=rf"manifest.json: a file; load_encoder takes the export's folder \({directory}\)"):
        load_encoder(directory / "manifest.json")


def _edit_manifest(directory, **changes):
    path = directory / "manifest.json"
    manifest = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))


def test_a_pickle_that_matches_its_hash_but_not_its_format_is_refused_when_unpickled(exported):
    import hashlib

    directory = exported[0]
    (directory / "encoder.joblib").write_bytes(b"garbage")
    files = json.loads((directory / "manifest.json").read_text())["files"]
    _edit_manifest(directory, files={**files, "encoder.joblib": hashlib.sha256(b"garbage").hexdigest()})
    with pytest.raises(ExportError, match="encoder.joblib: cannot be loaded"):
        load_encoder(directory, allow_pickle=True)


def test_load_encoder_in_a_fresh_process_needs_no_optuna_or_ray(exported):
    directory = exported[0]
    code = f"""
import sys, joblib, numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from encoderkit import load_encoder
X, y = load_digits(return_X_y=True)
X, y = X[:300], y[:300]
encoder = load_encoder({str(directory)!r})
codes = encoder.transform(X)
assert codes.shape == (300, 4), codes.shape
pipe = make_pipeline(encoder, LogisticRegression(max_iter=300)).fit(X, y)
assert pipe.score(X, y) > 0.3
refit = clone(encoder).fit(X)
assert refit.transform(X).shape == (300, 4)
joblib.dump(encoder, {str(directory.parent / 'again.joblib')!r})
again = joblib.load({str(directory.parent / 'again.joblib')!r})
assert np.array_equal(again.transform(X), codes)
print("optuna" in sys.modules, "ray" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_loading_under_a_keras_backend_that_is_not_installed_says_which_package(exported, tmp_path):
    """An encoder received by someone whose KERAS_BACKEND names a package they lack: Keras'
    own ModuleNotFoundError came from deep inside its backend import."""
    fake = tmp_path / "site" / "torch"  # torch as if not installed, whether or not it is
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    code = f"""
from encoderkit import load_encoder
from encoderkit.errors import KerasBackendMissing
try:
    load_encoder({str(exported[0])!r})
except KerasBackendMissing as exc:
    print(exc)
"""
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": f"{fake.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ("Keras backend torch: needs the Python package 'torch', which is not installed "
                                     "here (pip install torch, or set KERAS_BACKEND to an installed backend)")


def test_loading_under_a_keras_backend_name_keras_does_not_know_is_one_line(exported):
    """Keras' own ValueError ("Unable to import backend : JAX") came with its traceback."""
    code = f"""
from encoderkit import load_encoder
from encoderkit.errors import KerasBackendMissing
try:
    load_encoder({str(exported[0])!r})
except KerasBackendMissing as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "JAX"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "KERAS_BACKEND='JAX': not a Keras backend (tensorflow, jax or torch, in lower case)"


def test_an_export_killed_between_its_two_renames_is_put_back(exported):
    """Killed after the old export was moved aside and before the new one took its place:
    the clean-up restores the old one instead of deleting the only copy."""
    from encoderkit.export import remove_leftovers

    directory, transformer, X = exported
    retired = directory.with_name(f".{directory.name}.old-12345")
    directory.rename(retired)
    remove_leftovers(directory)
    assert not retired.exists()
    np.testing.assert_array_equal(load_encoder(directory).transform(X), transformer.transform(X))


def test_after_several_killed_exports_the_newest_retired_copy_comes_back(exported, tmp_path):
    """Two exports killed between their renames leave two retired copies: the newer one is
    the export that was in place last, and the older one goes."""
    import time

    from encoderkit.export import remove_leftovers

    directory, transformer, X = exported
    older = directory.with_name(f".{directory.name}.old-1")
    older.mkdir()
    (older / "marker").write_text("older")
    newer = directory.with_name(f".{directory.name}.old-2")
    directory.rename(newer)
    os.utime(older, (time.time() - 60, time.time() - 60))  # retired a minute before the other
    remove_leftovers(directory)
    assert not older.exists() and not newer.exists() and not (directory / "marker").exists()
    np.testing.assert_array_equal(load_encoder(directory).transform(X), transformer.transform(X))


def test_an_encoder_fit_with_a_random_state_object_exports_and_loads(small_digits, tmp_path):
    """A RandomState was used up by fit: the export records None in its place (a JSON
    manifest cannot hold it, and load_encoder rebuilds from the manifest's parameters)."""
    X, _ = small_digits
    fitted = AutoencoderTransformer(code_size=3, epochs=1, random_state=np.random.RandomState(0)).fit(X[:200])
    save_export(tmp_path / "export", fitted, {})
    loaded = load_encoder(tmp_path / "export")
    assert loaded.get_params()["random_state"] is None
    np.testing.assert_array_equal(loaded.transform(X[:20]), fitted.transform(X[:20]))


def test_a_scaler_array_that_is_not_a_fitted_attribute_is_refused(exported):
    import hashlib

    directory = exported[0]
    with np.load(directory / "preprocessing.npz") as arrays:
        np.savez(directory / "preprocessing.npz", **dict(arrays), transform=np.zeros(3))
    files = json.loads((directory / "manifest.json").read_text())["files"]
    digest = hashlib.sha256((directory / "preprocessing.npz").read_bytes()).hexdigest()
    _edit_manifest(directory, files={**files, "preprocessing.npz": digest})
    with pytest.raises(ExportError, match="'transform' is not a fitted attribute"):
        load_encoder(directory)
