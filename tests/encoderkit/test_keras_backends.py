"""The families on Keras' other backends. The suite runs under TensorFlow; here the family
conformance tests run again in a subprocess under JAX (when JAX is installed), and an export
made under TensorFlow is loaded under JAX."""

import importlib.util
import os
import subprocess
import sys

import pytest

from encoderkit import AutoencoderTransformer
from tests.conftest import ROOT, reload_check

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")


def under(backend, *args, timeout=1200, env=None):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


@needs_jax
def test_family_conformance_suite_passes_under_jax():
    # Every family and variant, each once: the dense families flatten an image exactly as a
    # table, and conv1d/seq2seq read it exactly as a sequence, so image cases add no code path
    # here (conv2d keeps its own image cases: two channels, dilated, pooled codes).
    done = under("jax", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/encoderkit/test_families.py",
                 "-k", "(transformer_transforms_pickles and not image) or denoising_noise or vae_encoder")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@needs_jax
@pytest.mark.parametrize("family, params", [
    ("dense", {"layers": [{"units": 16, "activation": "relu"}]}),
    ("denoising", {"noise": 0.2, "noise_type": "masking", "layers": []}),
])
def test_export_made_under_tensorflow_loads_under_jax(family, params, small_digits, tmp_path):
    import keras

    assert keras.backend.backend() == "tensorflow"
    X, _ = small_digits
    fitted = AutoencoderTransformer(family=family, code_size=4, family_params=params, epochs=1, random_state=0).fit(X)
    code = "import keras; assert keras.backend.backend() == 'jax';" + reload_check(fitted, X[:20], tmp_path, 1e-4, 1e-5)
    done = under("jax", "-c", code, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@needs_jax
def test_jitted_encoding_under_jax_gives_the_direct_calls_codes():
    """Under JAX the encoder runs as one jitted function over padded chunks (no op-by-op
    compiles); its codes are the direct call's, for every row count and a padded last chunk."""
    code = """
import numpy as np
from encoderkit import AutoencoderTransformer
from encoderkit.transformer import encode_in_chunks, jitted_encoders
X = np.random.default_rng(0).random((300, 64)).astype("float32")
conv = {"layers": [{"filters": 4, "kernel_size": 3, "activation": "relu", "pool": True}], "batch_norm": True}
for family, params in [("conv2d", conv), ("vae", {"layers": [{"units": 8, "activation": "relu"}]})]:
    fitted = AutoencoderTransformer(family=family, code_size=5, family_params=params, epochs=1, input_shape=(8, 8, 1),
                                    random_state=0).fit(X)
    scaled = fitted.scaler_.transform(X).astype("float32")
    for n in (1, 37, 300):
        direct = np.asarray(fitted.encoder_(scaled[:n], training=False)).reshape(n, -1)
        np.testing.assert_allclose(encode_in_chunks(fitted.encoder_, scaled[:n], chunk=128), direct, rtol=1e-5, atol=1e-5)
    assert fitted.encoder_ in jitted_encoders
"""
    done = under("jax", "-c", code, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@needs_jax
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_pickling_a_fitted_encoder_under_jax_prints_nothing(tmp_path):
    """Keras' pickling imports TensorFlow wherever it is installed: under JAX, joblib.dump and
    a fresh process's joblib.load printed TensorFlow's start-up lines."""
    path = tmp_path / "encoder.joblib"
    dump = ("import joblib, numpy as np\nfrom encoderkit import AutoencoderTransformer\n"
            "X = np.random.default_rng(0).random((60, 6))\n"
            f"joblib.dump(AutoencoderTransformer(code_size=2, epochs=1).fit(X), {str(path)!r})\n")
    load = (f"import joblib\nencoder = joblib.load({str(path)!r})\njoblib.dump(encoder, {str(path)!r} + '2')\n"
            "print(type(encoder).__name__)\n")  # a loaded encoder, pickled again: nothing had imported TensorFlow
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    for code in (dump, load):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                              env={**env, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT / "src")})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr == "", done.stderr[-2000:]
    assert done.stdout.strip() == "AutoencoderTransformer"
