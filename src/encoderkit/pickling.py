"""Imported when a pickled fitted transformer is loaded (its state names `QuietTensorFlow`
first, so this module is imported before the Keras models in the state are rebuilt): it
imports TensorFlow without its start-up lines, which Keras' unpickling would print."""

from encoderkit.quiet import tensorflow_imported_quietly

tensorflow_imported_quietly()


class QuietTensorFlow:
    """The marker a pickled transformer's state names; it holds nothing."""
