"""encoderkit: autoencoder families as fitted scikit-learn transformers.

    from encoderkit import load_encoder
    codes = load_encoder("study/export").transform(X)

Importing encoderkit does not import TensorFlow; fitting or loading a model does."""

from encoderkit.array_api import prepare_scipy as _prepare_scipy

_prepare_scipy()  # before scikit-learn imports SciPy: the reference probe on a GPU needs it
from encoderkit.errors import DataError, EncoderkitError, ExportError, TrainingError
from encoderkit.export import load_encoder, read_manifest
from encoderkit.transformer import AutoencoderTransformer

__version__ = "0.1.0"
__all__ = [
    "AutoencoderTransformer",
    "DataError",
    "EncoderkitError",
    "ExportError",
    "TrainingError",
    "load_encoder",
    "read_manifest",
]
