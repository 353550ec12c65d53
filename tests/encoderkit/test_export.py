import json
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


def test_export_holds_the_three_files_and_loads(exported):
    directory, transformer, X = exported
    assert sorted(p.name for p in directory.iterdir()) == ["encoder.joblib", "encoder.keras", "manifest.json"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["trial"] == 0 and manifest["packages"]["keras"]
    np.testing.assert_array_equal(load_encoder(directory).transform(X), transformer.transform(X))


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
        (lambda d: (d / "encoder.joblib").write_bytes(b"garbage"), "cannot be loaded"),
        (lambda d: (d / "encoder.joblib").unlink(), "incomplete"),
        (lambda d: _edit_manifest(d, format_version=99), "format_version 99"),
        (lambda d: _edit_manifest(d, packages={"keras": "2.15.0"}), "keras 2.15.0"),
    ],
)
def test_damaged_or_incompatible_exports_raise_export_error(exported, damage, message):
    directory = exported[0]
    damage(directory)
    with pytest.raises(ExportError, match=message):
        load_encoder(directory)


def _edit_manifest(directory, **changes):
    path = directory / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


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
