"""Fast tests of how the grader reads a student's Keras layers (grader/grading/evidence.py): each
layer as the structure rules see it, activations folded into the layer before them, what
is wrong with a model's output, and the model's table on the scorecard."""

import dataclasses

import keras

from grader.grading import evidence
from grader.grading.structure import Found
from reference import graph

layers = keras.layers


def described(layer):
    found = evidence.describe(layer, 4)
    return (found.kind, found.units, found.activation, dict(found.options), found.index)


def test_each_layer_is_read_by_what_it_does():
    assert described(layers.Dense(5, activation="softmax")) == ("Dense", 5, "softmax", {}, 4)
    assert described(layers.Dense(64)) == ("Dense", 64, "linear", {}, 4)
    assert described(layers.Conv2D(16, 3, padding="same", activation="relu")) == (
        "Conv2D", 16, "relu", {"kernel_size": "3", "strides": "1", "padding": "same"}, 4)
    assert described(layers.Conv2D(8, (3, 5), strides=2)) == ("Conv2D", 8, "linear", {"kernel_size": "3x5", "strides": "2", "padding": "valid"}, 4)
    assert described(layers.SeparableConv2D(32, 3, activation="relu"))[:3] == ("SeparableConv2D", 32, "relu")
    assert described(layers.DepthwiseConv2D(3, strides=2, activation="relu")) == (
        "DepthwiseConv2D", None, "relu", {"kernel_size": "3", "strides": "2", "padding": "valid"}, 4)
    assert described(layers.Conv1D(8, 5, padding="causal")) == ("Conv1D", 8, "linear", {"kernel_size": "5", "strides": "1", "padding": "causal"}, 4)
    assert described(layers.MaxPooling2D()) == ("MaxPooling2D", None, None, {"pool_size": "2", "strides": "2", "padding": "valid"}, 4)
    assert described(layers.AveragePooling2D(3, strides=1, padding="same")) == (
        "AveragePooling2D", None, None, {"pool_size": "3", "strides": "1", "padding": "same"}, 4)
    assert described(layers.Dropout(0.25)) == ("Dropout", None, None, {"rate": "0.25"}, 4)
    assert described(layers.SpatialDropout2D(0.3)) == ("SpatialDropout2D", None, None, {"rate": "0.3"}, 4)
    assert described(layers.Softmax()) == ("Softmax", None, "softmax", {}, 4)
    assert described(layers.ReLU()) == ("ReLU", None, "relu", {}, 4)
    for bounded in (layers.ReLU(max_value=6.0), layers.ReLU(negative_slope=0.1), layers.ReLU(threshold=0.5)):
        assert described(bounded)[2] == "relu (bounded or leaky)"
    assert described(layers.Activation("softmax")) == ("Activation", None, "softmax", {}, 4)
    assert described(layers.GlobalAveragePooling2D()) == ("GlobalAveragePooling2D", None, None, {}, 4)
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3)], name="block")
    nested = evidence.describe(inner)
    assert (nested.kind, nested.name, nested.note) == ("Sequential", "block", "a nested model 'block' of 15 parameters")


def test_each_described_layer_keeps_its_own_name_and_place_in_the_chain():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3)], name="block")
    for layer in (layers.Dense(5, name="scores"), layers.Conv2D(8, 3, name="conv"), layers.MaxPooling2D(name="pool"),
                  layers.Dropout(0.5, name="drop"), layers.Softmax(name="probabilities"), layers.ReLU(name="rectify"),
                  layers.Activation("relu", name="act"), layers.Flatten(name="flat"), inner):
        found = evidence.describe(layer, 7)
        assert (found.name, found.index) == (layer.name, 7)


def test_an_activation_given_as_a_layer_is_named_by_that_layer():
    found = evidence.describe(layers.Dense(4, activation=layers.LeakyReLU(negative_slope=0.2, name="leaky")))
    assert isinstance(found.activation, str) and "LeakyReLU" in found.activation and "leaky" in found.activation


def test_an_activation_layer_is_folded_into_the_linear_layer_before_it_only():
    dense, softmax = Found("Dense", 5, "linear"), Found("Activation", activation="softmax")
    assert evidence.fold_activations([Found("Flatten"), dense, softmax]) == [Found("Flatten"), Found("Dense", 5, "softmax")]
    assert evidence.fold_activations([Found("Dense", 5, "relu"), softmax]) == [Found("Dense", 5, "relu"), softmax]
    assert evidence.fold_activations([softmax, dense]) == [softmax, dense]
    assert evidence.fold_activations([dense, Found("ReLU", activation="relu"), Found("Softmax", activation="softmax")]) == [
        Found("Dense", 5, "relu"), Found("Softmax", activation="softmax")]


def test_an_output_that_is_not_one_score_per_class_is_named_with_its_fix():
    assert evidence._output_problem((5,), 5) == ""
    assert evidence._output_problem((3, 3, 1280), 5) == ("the model gives an output of shape (3, 3, 1280) per image, not one score per "
                                                         "class: put Flatten or GlobalAveragePooling2D before the last Dense layer")
    assert evidence._output_problem((3, 3, 64), 5, "end the convolutions with GlobalAveragePooling2D").endswith(
        "not one score per class: end the convolutions with GlobalAveragePooling2D")
    assert evidence._output_problem((10,), 5) == ("the model gives 10 outputs per image, but the lab has 5 classes: end in "
                                                  "Dense(5, activation='softmax'), one unit per class")
    assert evidence._output_problem((1,), 5).startswith("the model gives 1 outputs per image, fewer than the lab has 5 classes")


def test_the_models_table_gives_each_layer_its_shape_and_parameters_and_the_totals():
    model = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(),
                              layers.Dense(5, activation="softmax")])
    model.layers[0].trainable = False
    table = evidence.model_summary(model)
    assert [(row["layer"], row["output_shape"], row["params"]) for row in table["layers"]] == [
        ("Conv2D(4, relu, kernel_size=3, strides=1, padding=valid)", "(None, 6, 6, 4)", 112),
        ("GlobalAveragePooling2D", "(None, 4)", 0), ("Dense(5, softmax)", "(None, 5)", 25)]
    assert (table["total_params"], table["trainable_params"], table["non_trainable_params"]) == (137, 25, 112)
    assert table["gflops_per_image"] >= 0 and table["activations_per_image"] > 0


def test_the_models_table_follows_the_chain_and_calls_its_base_by_the_labs_name():
    base = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3)], name="mobilenet")
    head = keras.Sequential([keras.Input((4,)), layers.Dense(6, name="hidden"), layers.Dense(5, name="scores")], name="head")
    model = keras.Sequential([keras.Input((8, 8, 3)), base, layers.GlobalAveragePooling2D(name="pool"), head])
    chain = graph.chain(model, lambda layer: layer is base)

    def rows(table):
        return [(row["name"], row["layer"].split(" (")[0]) for row in table["layers"]]

    assert rows(evidence.model_summary(model, chain, "MobileNetV2")) == [
        ("mobilenet", "MobileNetV2"), ("pool", "GlobalAveragePooling2D"), ("hidden", "Dense(6, linear)"), ("scores", "Dense(5, linear)")]
    assert evidence.model_summary(model, chain)["layers"][0]["layer"].startswith("pretrained base (")
    broken = dataclasses.replace(chain, problem="the model branches")  # not one chain: the model's own layers
    assert [row["name"] for row in evidence.model_summary(model, broken)["layers"]] == ["mobilenet", "pool", "head"]


def test_an_unbuilt_layer_is_tabled_without_a_shape_or_parameters():
    table = evidence.model_summary(keras.Sequential([layers.Dense(3, name="scores")]))
    assert table["layers"] == [{"name": "scores", "layer": "Dense(3, linear)", "output_shape": "?", "params": 0}]


def test_the_models_cost_per_image_is_given_in_gflops_to_four_places():
    model = keras.Sequential([keras.Input((64, 64, 3)), layers.Conv2D(32, 3)])
    table = evidence.model_summary(model)
    # 2 FLOPs per weight of the 3x3x3x32 kernel at each of 62x62 positions: 6,642,432 FLOPs
    assert table["gflops_per_image"] == 0.0066
    assert table["activations_per_image"] == 62 * 62 * 32
