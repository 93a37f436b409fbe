"""The grader decides every value it trains from: initializers that carry values are replaced."""

import json

import numpy as np
import pytest

from reference import initial


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def test_constant_initializers_become_the_layers_own_and_seeds_are_dropped(keras):
    fitted = np.random.default_rng(1).normal(size=(4, 3)).tolist()  # a list: what Keras keeps of Constant(k.tolist())
    dense = keras.layers.Dense(3, activation="softmax", name="head", kernel_initializer=keras.initializers.Constant(fitted),
                               bias_initializer=keras.initializers.Constant(0.5))
    config, replaced = initial.decided(dense.get_config(), "Dense")
    assert config["kernel_initializer"] == "glorot_uniform" and config["bias_initializer"] == "zeros"
    assert replaced == ("head's kernel_initializer (Constant)", "head's bias_initializer (Constant)")
    assert config["activation"] == "softmax" and config["units"] == 3  # the rest is the student's
    seeded = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=1234)).get_config()
    config, replaced = initial.decided(seeded, "Dense")
    assert config["kernel_initializer"]["config"]["seed"] is None and replaced == ()
    norm = keras.layers.BatchNormalization(moving_variance_initializer=keras.initializers.Constant([2.0] * 5)).get_config()
    assert initial.decided(norm, "BatchNormalization")[0]["moving_variance_initializer"] == "ones"


def test_nested_models_are_walked(keras):
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant(3.0), name="deep")])
    config, replaced = initial.decided(inner.get_config(), "Sequential")
    assert replaced == ("deep's kernel_initializer (Constant)",)
    rebuilt = keras.Sequential.from_config(config)
    assert not np.allclose(rebuilt.layers[-1].get_weights()[0], 3.0)


def test_arrays_of_numbers_in_a_config_are_refused_with_where(keras):
    scale = keras.layers.Rescaling(scale=[0.5] * 40, name="scales")
    with pytest.raises(initial.CarriedValues, match="40 numbers in scales's scale"):
        initial.decided(scale.get_config(), "Rescaling")
    per_channel = keras.layers.Rescaling(scale=[1 / 58.4, 1 / 57.1, 1 / 57.4])  # ImageNet's per-channel scale: fine
    assert initial.decided(per_channel.get_config(), "Rescaling")[1] == ()
    with pytest.raises(initial.CarriedValues):
        initial.decided(keras.layers.Normalization(mean=[0.1] * 20, variance=[1.0] * 20).get_config(), "Normalization")


def test_a_head_given_fitted_constants_and_no_learning_rate_trains_from_the_graders_values(keras):
    """The smuggling attack in small: a head's kernel fitted elsewhere, learning rate 0. The
    grader's copy starts from its own seeded values, the same as a plain head's."""
    from reference import graph
    from reference.training import fresh_copy, replaced_initial_values

    fitted = np.full((6, 5), 9.0).tolist()
    smuggled = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="softmax", name="out",
                                                                       kernel_initializer=keras.initializers.Constant(fitted))])
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="softmax", name="out")])
    chain = graph.chain(smuggled, lambda layer: False)
    assert replaced_initial_values(chain) == ("out's kernel_initializer (Constant)",)
    keras.utils.set_random_seed(7)
    copy = fresh_copy(smuggled.layers[-1])
    copy.build((None, 6))
    keras.utils.set_random_seed(7)
    reference = fresh_copy(plain.layers[-1])
    reference.build((None, 6))
    assert np.array_equal(copy.get_weights()[0], reference.get_weights()[0]) and not np.allclose(copy.get_weights()[0], 9.0)
    assert json.dumps(copy.get_config()["kernel_initializer"]) == json.dumps(reference.get_config()["kernel_initializer"])


def test_numbers_written_into_how_a_nested_model_calls_its_layers_are_not_trained():
    """A `mask=[...]` a layer of the base's graph is called with carries a classifier fitted
    elsewhere as well as an initializer would: held to the same rule."""
    from reference import initial

    mask = [[1 if n % 3 else 0 for n in range(1280)]]
    base = {"name": "base", "layers": [{"class_name": "GlobalAveragePooling1D", "config": {"name": "pool"},
                                        "inbound_nodes": [{"args": [], "kwargs": {"mask": mask}}]}]}
    with pytest.raises(initial.CarriedValues, match="1,280 numbers in the call of pool inside a nested model"):
        initial.decided(base, "Functional")
    plain = {"name": "base", "layers": [{"class_name": "ReLU", "config": {"name": "relu"},
                                         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [None, 3, 3, 8]}}],
                                                            "kwargs": {}}]}]}
    assert initial.decided(plain, "Functional")[1] == ()
