"""Family conformance: every registered family builds, trains, transforms, pickles and encodes
deterministically at inference."""

import pickle

import numpy as np
import pytest

from encoderkit import AutoencoderTransformer
from encoderkit.families import FAMILIES, get_family

SMALL_LAYERS = [{"units": 6, "activation": "relu"}]
SMALL_STACKS = {
    "conv1d": [{"filters": 4, "kernel_size": 3, "activation": "relu", "pool": True}] * 2,
    "conv2d": [{"filters": 4, "kernel_size": 3, "activation": "relu", "pool": True}] * 2,
    "seq2seq": [{"units": 6, "activation": "tanh"}],
}
# One sample shape per data kind; odd sizes so that pooling does not divide them.
SHAPES = {"tabular": (12,), "sequence": (5, 3), "image": (7, 5, 1)}
DENSE_FAMILIES = ("dense", "denoising", "sparse", "vae")


def _cases():
    cases = []
    for name, spec in FAMILIES.items():
        for kind in spec.data_kinds:
            shape = SHAPES[kind]
            if name == "denoising":
                for noise_type in ("masking", "gaussian"):
                    params = {"layers": SMALL_LAYERS, "noise": 0.3, "noise_type": noise_type}
                    cases.append(pytest.param(name, params, shape, id=f"denoising-{noise_type}-{kind}"))
            elif name == "seq2seq":
                for cell in ("lstm", "gru", "simple_rnn"):
                    params = {"layers": SMALL_STACKS[name], "cell": cell}
                    cases.append(pytest.param(name, params, shape, id=f"seq2seq-{cell}-{kind}"))
            else:
                params = {"layers": SMALL_STACKS.get(name, SMALL_LAYERS)}
                cases.append(pytest.param(name, params, shape, id=f"{name}-{kind}"))
    tabular = SHAPES["tabular"]
    cases += [
        pytest.param("dense", {"layers": []}, tabular, id="dense-no-hidden-layer"),
        pytest.param("vae", {"layers": []}, tabular, id="vae-no-hidden-layer"),
        pytest.param("conv2d", {"layers": [], "batch_norm": True}, SHAPES["image"], id="conv2d-no-conv-layer"),
        pytest.param(
            "conv2d",
            {"layers": [{"filters": 3, "kernel_size": 5, "activation": "elu", "pool": False}] + SMALL_STACKS["conv2d"],
             "batch_norm": True, "dropout": 0.2},
            (9, 6, 2), id="conv2d-two-channels-batchnorm-dropout",
        ),
        *(pytest.param(name, {"layers": [{"filters": 4, "kernel_size": 3, "dilation": 2, "pool": True},
                                         {"filters": 5, "kernel_size": 5, "dilation": 3, "pool": False}],
                              "code_pooling": pooling}, SHAPES["image" if name == "conv2d" else "sequence"],
                       id=f"{name}-dilated-{pooling}")
          for name in ("conv1d", "conv2d") for pooling in ("global_max", "global_average")),
        pytest.param("seq2seq", {"layers": SMALL_STACKS["seq2seq"] * 2, "batch_norm": True, "cell": "gru"},
                     SHAPES["sequence"], id="seq2seq-two-layers-batchnorm"),
        pytest.param(
            "dense",
            {"layers": [{"units": 8, "activation": "tanh"}, {"units": 5, "activation": "elu"}],
             "batch_norm": True, "dropout": 0.2},
            tabular, id="dense-batchnorm-dropout",
        ),
        pytest.param("denoising", {"layers": SMALL_LAYERS, "batch_norm": True, "dropout": 0.2, "noise": 0.5,
                                   "noise_type": "masking"}, tabular, id="denoising-batchnorm-dropout"),
    ]
    return cases


CASES = _cases()


def data(shape, n=120):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, int(np.prod(shape)))).astype("float32")


@pytest.fixture(scope="module")
def X():
    return data(SHAPES["tabular"])


# What the product offers, written out rather than read from the registry (which CASES walks),
# so a family, a data kind, a recurrent cell or a noise type that goes missing fails here.
OFFERED = {
    "dense": {"tabular", "image", "sequence"},
    "denoising": {"tabular", "image", "sequence"},
    "sparse": {"tabular", "image", "sequence"},
    "vae": {"tabular", "image", "sequence"},
    "conv1d": {"image", "sequence"},
    "conv2d": {"image", "sequence"},
    "seq2seq": {"image", "sequence"},
}
OFFERED_VARIANTS = {"seq2seq": {"cell": {"lstm", "gru", "simple_rnn"}},
                    "denoising": {"noise_type": {"masking", "gaussian"}},
                    "conv1d": {"code_pooling": {"flatten", "global_max", "global_average"}},
                    "conv2d": {"code_pooling": {"flatten", "global_max", "global_average"}}}


def test_every_offered_family_data_kind_and_variant_is_registered_and_tested():
    assert {name: set(spec.data_kinds) for name, spec in FAMILIES.items()} == OFFERED
    ndims = {"tabular": 1, "sequence": 2, "image": 3}
    covered = {(case.values[0], len(case.values[2])) for case in CASES}
    assert covered >= {(name, ndims[kind]) for name, kinds in OFFERED.items() for kind in kinds}
    for name, variants in OFFERED_VARIANTS.items():
        for key, values in variants.items():
            assert {FAMILIES[name].resolve(case.values[1])[key] for case in CASES if case.values[0] == name} >= values, (name, key)
            FAMILIES[name].resolve({key: sorted(values)[0]})  # and the family takes them


@pytest.mark.parametrize("name, params, shape", CASES)
def test_builder_gives_matching_autoencoder_and_encoder_that_train(name, params, shape):
    X = data(shape)
    size = X.shape[1]
    spec = FAMILIES[name]
    autoencoder, encoder = spec.builder()(name, spec.resolve(params), input_shape=shape, code_size=3, seed=0)
    assert tuple(autoencoder.input_shape) == (None, size)
    assert tuple(autoencoder.output_shape) == (None, size)  # the decoder reproduces the input shape
    assert tuple(encoder.output_shape) == (None, 3)
    # the encoder shares the autoencoder's weights (it is a sub-graph, not a copy)
    ae_weights = {id(w) for w in autoencoder.weights}
    assert all(id(w) in ae_weights for w in encoder.weights)
    if name in DENSE_FAMILIES:
        n_dense = sum(type(layer).__name__ == "Dense" for layer in encoder.layers)
        assert n_dense == len(params["layers"]) + 1  # the stack and the code (vae: its mean only)

    autoencoder.compile("adam", "mse")
    history = autoencoder.fit(X, X, epochs=1, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0
    codes = np.asarray(encoder(X, training=False))
    assert codes.shape == (len(X), 3) and np.all(np.isfinite(codes))


@pytest.mark.parametrize("name, params, shape", CASES)
def test_transformer_transforms_pickles_and_is_deterministic(name, params, shape):
    X = data(shape)
    transformer = AutoencoderTransformer(
        family=name, code_size=3, epochs=1, batch_size=32, random_state=0, family_params=params,
        input_shape=shape,
    ).fit(X)
    codes = transformer.transform(X)
    assert codes.shape == (len(X), 3)
    assert np.all(np.isfinite(codes))
    assert np.std(codes) > 0  # not a constant code
    # noise (denoising), sampling (vae) and dropout are training-only
    np.testing.assert_array_equal(transformer.transform(X), codes)
    # a smaller batch gives the same codes up to float32 rounding (BLAS blocking differs)
    np.testing.assert_allclose(transformer.transform(X[:7]), codes[:7], rtol=1e-5, atol=1e-6)

    restored = pickle.loads(pickle.dumps(transformer))
    assert restored is not transformer and restored.encoder_ is not transformer.encoder_
    np.testing.assert_array_equal(restored.transform(X), codes)


def test_denoising_noise_applies_in_training_only(X):
    spec = FAMILIES["denoising"]
    for noise_type in ("masking", "gaussian"):
        params = spec.resolve({"layers": [], "noise": 0.5, "noise_type": noise_type})
        _, encoder = spec.builder()("denoising", params, input_shape=(12,), code_size=3, seed=0)
        inference = np.asarray(encoder(X, training=False))
        np.testing.assert_array_equal(inference, np.asarray(encoder(X, training=False)))
        assert not np.allclose(np.asarray(encoder(X, training=True)), inference), noise_type


def test_vae_encoder_returns_the_posterior_mean(X):
    spec = FAMILIES["vae"]
    autoencoder, encoder = spec.builder()("vae", spec.resolve({"layers": SMALL_LAYERS}), input_shape=(12,),
                                          code_size=3, seed=0)
    mean_layer = autoencoder.get_layer("code_mean")
    assert encoder.output is mean_layer.output
    # the full model samples while training and is deterministic otherwise
    np.testing.assert_array_equal(np.asarray(autoencoder(X, training=False)),
                                  np.asarray(autoencoder(X, training=False)))
    assert not np.allclose(np.asarray(autoencoder(X, training=True)), np.asarray(autoencoder(X, training=False)))


def test_registry_rejects_an_unknown_family():
    with pytest.raises(ValueError, match="'autoencoderx'") as info:
        get_family("autoencoderx")
    for known in FAMILIES:
        assert known in str(info.value)
    with pytest.raises(ValueError, match="'convolutional'"):
        AutoencoderTransformer(family="convolutional", epochs=1).fit(np.zeros((10, 3)))


def test_resolve_fills_defaults_and_rejects_unknown_params():
    resolved = FAMILIES["denoising"].resolve({"layers": [{"units": 4}], "noise": 0.1})
    assert resolved["layers"] == [{"units": 4, "activation": "relu"}]
    assert resolved["noise"] == 0.1 and resolved["noise_type"] == "gaussian"
    assert resolved["dropout"] == 0.0 and resolved["batch_norm"] is False
    assert FAMILIES["dense"].resolve(None)["layers"] == [{"units": 64, "activation": "relu"}]
    with pytest.raises(ValueError, match="'dense'.*'beta'"):
        FAMILIES["dense"].resolve({"beta": 1.0})


def test_input_shape_must_match_the_number_of_features():
    with pytest.raises(ValueError, match=r"input_shape=\(7, 5, 1\) holds 35 values but X has 12 features"):
        AutoencoderTransformer(family="conv2d", input_shape=(7, 5, 1), epochs=1).fit(data((12,)))


def test_conv2d_refuses_sequences_with_a_clear_error():
    with pytest.raises(ValueError, match="conv2d needs images"):
        AutoencoderTransformer(family="conv2d", input_shape=(2, 3, 2, 1), epochs=1).fit(data((12,)))


@pytest.mark.parametrize("pooling, layer", [("flatten", "Flatten"), ("global_max", "GlobalMaxPooling1D"),
                                            ("global_average", "GlobalAveragePooling1D")])
def test_conv_code_pooling_and_dilation_shape_the_encoder(pooling, layer):
    params = {"layers": [{"filters": 4, "kernel_size": 3, "dilation": 4, "pool": True}], "code_pooling": pooling}
    model = AutoencoderTransformer(family="conv1d", code_size=3, family_params=params, input_shape=(16, 2),
                                   epochs=1, random_state=0).fit(data((16, 2), n=30))
    kinds = [type(x).__name__ for x in model.encoder_.layers]
    assert layer in kinds
    convs = [x for x in model.autoencoder_.layers if type(x).__name__ == "Conv1D"]
    assert [c.dilation_rate for c in convs[:2]] == [(4,), (4,)]  # encoder and its decoder mirror
    with pytest.raises(ValueError, match="code_pooling"):
        get_family("conv1d").resolve({"code_pooling": "median"})
