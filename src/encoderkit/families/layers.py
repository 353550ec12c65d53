"""Small custom layers shared by the families, written with keras.ops/keras.random only so
they run under every Keras backend."""

from encoderkit.quiet import import_keras_quietly

keras = import_keras_quietly()  # a bare `joblib.load` of an encoder imports Keras from here first
from keras import ops  # noqa: E402


@keras.saving.register_keras_serializable(package="encoderkit")
class MaskingNoise(keras.layers.Layer):
    """Sets a random fraction `rate` of inputs to zero while training, without rescaling the
    rest (unlike Dropout), which is the classic denoising-autoencoder corruption."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        keep = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator) >= self.rate
        return ops.where(keep, inputs, ops.zeros_like(inputs))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="encoderkit")
class GaussianSampling(keras.layers.Layer):
    """Reparameterised draw z = mean + exp(log_var / 2) * eps, and the KL term added as a
    loss (scaled by beta / n_inputs so it is comparable with a per-feature mean squared error).
    At inference it returns the mean, so the encoder is deterministic."""

    def __init__(self, beta=1.0, n_inputs=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.n_inputs = int(n_inputs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mean, log_var = inputs
        kl = -0.5 * ops.mean(ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1))
        self.add_loss(self.beta * kl / self.n_inputs)
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "n_inputs": self.n_inputs,
            "seed": self.seed,
        }
