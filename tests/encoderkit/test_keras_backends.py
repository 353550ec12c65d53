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
    done = under("jax", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/encoderkit/test_families.py",
                 "-k", "transformer_transforms_pickles or denoising_noise or vae_encoder")
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
