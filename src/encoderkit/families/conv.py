"""Convolutional autoencoders: conv1d (sequences T x F, images read row by row) and conv2d
(images H x W x C).

Each encoder layer is Conv (dilated or not) (+ BatchNorm) + activation (+ Dropout) (+ 2x
max-pool with 'same' padding), then Flatten (or a global max or mean over positions,
`code_pooling`) and a Dense code. The decoder mirrors it: Dense back to the last feature
map, then per layer (reversed) 2x upsampling and Conv, and a final Conv to the input's channels.
Pooling rounds sizes up, so upsampling can overshoot; the excess is cropped, which makes the
output shape equal the input shape for any size."""

import math

import keras

from encoderkit.families.dense import seed_offset
from encoderkit.families.initializers import HostGlorotUniform


def build(family, params, input_shape, code_size, seed=None, output_activation="sigmoid"):
    ndim = 2 if family == "conv2d" else 1
    shape = spatial_shape(family, input_shape)
    layers = _layers(ndim)
    regularizer = keras.regularizers.L2(params["l2"]) if params["l2"] > 0 else None
    size = math.prod(input_shape)

    inputs = keras.Input((size,), name="inputs")
    x = keras.layers.Reshape(shape)(inputs)
    sizes = [shape[:-1]]
    for i, layer in enumerate(params["layers"]):
        x = _conv_block(layers, x, layer, params, regularizer, seed_offset(seed, i))
        if layer["pool"]:
            x = layers["pool"](2, padding="same")(x)
            sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
    feature_shape = tuple(x.shape[1:])
    x = _CODE_INPUT[ndim][params["code_pooling"]]()(x)
    code = keras.layers.Dense(
        code_size, activation=params["code_activation"], kernel_regularizer=regularizer,
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 50)), name="code",
    )(x)

    x = keras.layers.Dense(
        math.prod(feature_shape), activation=params["layers"][-1]["activation"] if params["layers"] else "linear",
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 60)),
    )(code)
    x = keras.layers.Reshape(feature_shape)(x)
    for i, layer in enumerate(reversed(params["layers"])):
        if layer["pool"]:
            x = layers["upsample"](2)(x)
        x = _conv_block(layers, x, layer, params, regularizer, seed_offset(seed, 200 + i))
    x = layers["conv"](
        shape[-1], layer_kernel(params), padding="same", activation=output_activation,
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 300)),
    )(x)
    excess = [got - want for got, want in zip(x.shape[1:-1], shape[:-1])]
    if any(excess):
        x = layers["crop"](tuple((0, e) for e in excess) if ndim == 2 else (0, excess[0]))(x)
    outputs = keras.layers.Reshape((size,), name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=family), keras.Model(inputs, code, name="encoder")


def spatial_shape(family, input_shape):
    """The shape the family convolves over: conv2d needs H x W x C (a 2-D image gets one
    channel); conv1d reads T x F, so an image H x W x C becomes H steps of W*C features."""
    input_shape = tuple(int(s) for s in input_shape)
    if family == "conv2d":
        if len(input_shape) == 2:
            return (*input_shape, 1)
        if len(input_shape) != 3:
            raise ValueError(f"conv2d needs images (H, W, C) or sequences (T, F), got shape {input_shape}")
        return input_shape
    if len(input_shape) == 1:
        return (input_shape[0], 1)
    return (input_shape[0], math.prod(input_shape[1:]))


def layer_kernel(params):
    return params["layers"][0]["kernel_size"] if params["layers"] else 3


def _conv_block(layers, x, layer, params, regularizer, seed):
    x = layers["conv"](
        int(layer["filters"]), int(layer["kernel_size"]), padding="same", dilation_rate=int(layer["dilation"]),
        kernel_regularizer=regularizer,
        kernel_initializer=HostGlorotUniform(seed=seed),
    )(x)
    if params["batch_norm"]:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation(layer["activation"])(x)
    if params["dropout"] > 0:
        x = keras.layers.Dropout(params["dropout"], seed=seed)(x)
    return x


# The layer that turns the last feature map into the code's input, by `code_pooling`. The decoder
# starts from the whole map's shape either way (a pooled code is decoded as a flat one).
_CODE_INPUT = {
    ndim: {"flatten": keras.layers.Flatten, "global_max": pools[0], "global_average": pools[1]}
    for ndim, pools in ((1, (keras.layers.GlobalMaxPooling1D, keras.layers.GlobalAveragePooling1D)),
                        (2, (keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D)))
}


def _layers(ndim):
    if ndim == 2:
        return {"conv": keras.layers.Conv2D, "pool": keras.layers.MaxPooling2D,
                "upsample": keras.layers.UpSampling2D, "crop": keras.layers.Cropping2D}
    return {"conv": keras.layers.Conv1D, "pool": keras.layers.MaxPooling1D,
            "upsample": keras.layers.UpSampling1D, "crop": keras.layers.Cropping1D}
