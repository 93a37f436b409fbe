"""A model as one chain of layers: every way of writing the lab's model reads the same."""

import pytest

from reference import graph


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def small_base(keras):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    skip = keras.layers.Conv2D(4, 1, name="skip")(x)
    x = keras.layers.Add()([x, skip])  # a base is no chain: it must stay one layer
    return keras.Model(inputs, keras.layers.BatchNormalization()(x), name="base_like")


def kinds(chain):
    return [type(layer).__name__ for layer in chain.layers]


def test_every_way_of_writing_the_model_is_the_same_chain(keras):
    base = small_base(keras)
    is_base = graph.base_by_shapes(base.weights)
    listed = keras.Sequential([base, keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    added = keras.Sequential()
    for layer in (keras.Input((8, 8, 3)), base, keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")):
        added.add(layer)
    inputs = keras.Input((8, 8, 3))
    functional = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(base(inputs))))
    for model in (listed, added, functional):
        chain = graph.chain(model, is_base)
        assert kinds(chain) == ["Functional", "Flatten", "Dense"] and chain.base == 0 and not chain.problem
        assert [type(layer).__name__ for layer in chain.head] == ["Flatten", "Dense"]


def test_a_nested_augmentation_model_is_read_as_its_layers(keras):
    base = small_base(keras)
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)])
    model = keras.Sequential([keras.Input((8, 8, 3)), augment, base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    chain = graph.chain(model, graph.base_by_shapes(base.weights))
    assert kinds(chain) == ["RandomFlip", "RandomRotation", "Functional", "GlobalAveragePooling2D", "Dense"] and chain.base == 2


def test_the_base_is_found_by_its_weights_whatever_its_name(keras):
    base, other = small_base(keras), small_base(keras)
    other.name = "renamed_by_the_student"
    model = keras.Sequential([other, keras.layers.Flatten(), keras.layers.Dense(5)])
    assert graph.chain(model, graph.base_by_shapes(base.weights)).base == 0
    unrelated = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(5)])
    assert graph.chain(unrelated, graph.base_by_shapes(base.weights)).base is None


def test_a_model_that_is_not_one_chain_says_why(keras):
    base = small_base(keras)
    inputs = keras.Input((8, 8, 3))
    features = base(inputs)
    both = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(features), keras.layers.GlobalMaxPooling2D()(features)])
    model = keras.Model(inputs, keras.layers.Dense(5)(both))
    chain = graph.chain(model, graph.base_by_shapes(base.weights))
    assert chain.layers == () and "combines 2 inputs" in chain.problem


@pytest.mark.slow  # builds the application five times
def test_the_base_is_the_application_layer_for_layer_and_not_a_graph_with_the_same_weights():
    """A model with the base's variables and layers of its own in its graph (a classifier
    fitted elsewhere, written into the base's graph) is not taken for the pretrained base."""
    import json

    import keras

    from reference import graph

    def application(pooling=None):
        return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None, pooling=pooling)

    reference = application()
    architectures = tuple(graph.architecture(application(p)) for p in (None, "avg", "max"))
    is_base = graph.base_by_shapes(reference.weights, lambda: architectures)

    def round_trip(model):  # as the grader rebuilds what the run exported
        return keras.models.model_from_json(model.to_json())

    assert is_base(round_trip(application())) and is_base(round_trip(application("avg")))
    doctored = application()
    L = keras.layers
    extra = L.Rescaling(2.0)(L.GlobalAveragePooling2D()(doctored.output))
    assert not is_base(round_trip(keras.Model(doctored.input, extra, name=doctored.name)))  # the same weights, another graph
    assert graph.base_by_shapes(reference.weights)(round_trip(keras.Model(doctored.input, extra)))  # shapes alone would take it
