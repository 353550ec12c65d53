"""Kept for the engine's imports: the quiet Keras import lives in the library
(`encoderkit.quiet`), which loading an export uses too."""

from encoderkit.quiet import import_keras_quietly

__all__ = ["import_keras_quietly"]
