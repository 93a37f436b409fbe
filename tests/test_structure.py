import pytest

from grader.faults import ManifestError
from grader.structure import Found, Verdict, compare, parse_rule

RULE = parse_rule(["pretrained MobileNetV2(include_top=False)", "Flatten | GlobalAveragePooling2D", "Dropout?", "Dense(5, softmax)"])
BASE = Found("MobileNetV2", options=(("include_top", "False"), ("input", "96x96x3")), pretrained=True)


def test_the_lab_solution_matches():
    assert compare(RULE, [BASE, Found("Flatten"), Found("Dense", 5, "softmax")]).ok
    assert compare(RULE, [BASE, Found("GlobalAveragePooling2D"), Found("Dropout"), Found("Dense", 5, "softmax")]).ok


def test_empty_model_says_so():
    verdict = compare(RULE, [])
    assert not verdict.ok and "the model is empty" in verdict.message and verdict.differs_at == 0


def test_wrong_head_names_layer_value_and_fix():
    verdict = compare(RULE, [BASE, Found("Flatten"), Found("Dense", 10, "relu")])
    assert not verdict.ok
    assert "expected Dense with 5 units and softmax at the end; found Dense(10, relu)" in verdict.message
    assert verdict.differs_at == 2


def test_missing_softmax_says_set_activation():
    verdict = compare(RULE, [BASE, Found("Flatten"), Found("Dense", 5, "linear")])
    assert "set activation='softmax'" in verdict.message


def test_base_without_pretrained_weights_is_named():
    verdict = compare(RULE, [Found("MobileNetV2", options=BASE.options, pretrained=False), Found("Flatten"), Found("Dense", 5, "softmax")])
    assert "not the pretrained ones" in verdict.message


def test_extra_layers_and_missing_layers():
    assert "the model has an extra layer after Dense(5, softmax): Dense(5, softmax)" in compare(RULE, [BASE, Found("Flatten"), Found("Dense", 5, "softmax"), Found("Dense", 5, "softmax")]).message
    assert "the model stops after Flatten" in compare(RULE, [BASE, Found("Flatten")]).message


def test_unreadable_rule():
    with pytest.raises(ManifestError, match="cannot read"):
        parse_rule(["Dense(5, softmax"])


LAB = parse_rule(["preprocessing*", "pretrained MobileNetV2(include_top=False)", "Flatten | GlobalAveragePooling2D",
                  "(Dense(relu) | dropout)*", "Dense(5, softmax)"])


def test_repetition_groups_and_families():
    head = [Found("Flatten"), Found("Dense", 5, "softmax")]
    assert compare(LAB, [BASE, *head]).ok
    assert compare(LAB, [Found("RandomFlip"), Found("RandomRotation"), Found("Rescaling"), BASE, *head]).ok
    assert compare(LAB, [BASE, Found("Flatten"), Found("Dense", 64, "relu"), Found("Dropout"), Found("Dense", 32, "relu"), Found("Dense", 5, "softmax")]).ok
    assert not compare(LAB, [BASE, Found("Dense", 5, "softmax")]).ok


def test_the_feedback_names_the_layer_that_is_wrong():
    hidden_softmax = compare(LAB, [BASE, Found("Flatten"), Found("Dense", 64, "softmax"), Found("Dense", 5, "softmax")])
    assert hidden_softmax.message == "expected Dense with relu as layer 3; found Dense(64, softmax): set activation='relu'"
    assert hidden_softmax.differs_at == 2
    output_relu = compare(LAB, [BASE, Found("Flatten"), Found("Dense", 64, "relu"), Found("Dense", 5, "relu")])
    assert "at the end; found Dense(5, relu): set activation='softmax'" in output_relu.message and output_relu.differs_at == 3
    no_flatten = compare(LAB, [BASE, Found("Dense", 5, "softmax")])
    assert no_flatten.message == "expected Flatten or GlobalAveragePooling2D as layer 2, before Dense(5, softmax); add it"
    both = compare(LAB, [BASE, Found("Flatten"), Found("Dense", 64, "softmax"), Found("Dense", 5, "relu")])
    assert both.message == ("expected Dense with relu as layer 3; found Dense(64, softmax): set activation='relu'; "
                            "and expected Dense with 5 units and softmax at the end; found Dense(5, relu): set activation='softmax'")
    assert "it needs 5 units, one per class" in compare(LAB, [BASE, Found("Flatten"), Found("Dense", 10, "softmax")]).message
    conv = compare(LAB, [BASE, Found("Conv2D"), Found("Dense", 5, "softmax")])
    assert conv.message == "expected Flatten or GlobalAveragePooling2D as layer 2; found Conv2D"


def test_groups_hold_sequences_and_bad_rules_say_why():
    rule = parse_rule(["(Conv2D, MaxPooling2D)+", "GlobalAveragePooling2D", "Dense(5, softmax)"])
    conv = [Found("Conv2D"), Found("MaxPooling2D")]
    assert compare(rule, [*conv, *conv, Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]).ok
    assert not compare(rule, [Found("Conv2D"), Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]).ok
    for bad in (["(Dense | Flatten"], ["Dense(5, softmax) Flatten)"], ["hidden*"]):
        with pytest.raises(ManifestError, match="cannot read"):
            parse_rule(bad)


def test_layer_options_are_matched_as_written():
    rule = parse_rule(["(Conv2D(relu, kernel_size=3) | MaxPooling2D(pool_size=2))+", "GlobalAveragePooling2D", "Dense(5, softmax)"])
    conv = Found("Conv2D", 16, "relu", (("kernel_size", "3"), ("strides", "1"), ("padding", "same")))
    pool = Found("MaxPooling2D", options=(("pool_size", "2"), ("strides", "2"), ("padding", "valid")))
    head = [Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]
    assert compare(rule, [conv, conv, pool, *head]).ok
    wide = Found("Conv2D", 16, "relu", (("kernel_size", "5"), ("strides", "1"), ("padding", "same")))
    assert "found Conv2D(16, relu, kernel_size=5, strides=1, padding=same): it needs kernel_size=3" in compare(rule, [conv, wide, pool, *head]).message


def convnet_rule():
    """The convnet lab's own rule, as its manifest states it."""
    import os
    import tomllib

    from conftest import ROOT

    with open(os.path.join(ROOT, "assignments", "keras_flowers_convnet", "assignment.toml"), "rb") as handle:
        return parse_rule(next(c for c in tomllib.load(handle)["checks"] if c["id"] == "structure")["layers"])


def conv(filters):
    return Found("Conv2D", filters, "relu", options=(("kernel_size", "3"),))


HEAD = [Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]


@pytest.mark.parametrize("layers", [
    [conv(16), Found("MaxPooling2D"), conv(32), Found("MaxPooling2D"), *HEAD],  # conv-pool blocks, pooling last
    [conv(16), conv(32), Found("MaxPooling2D"), conv(64), Found("BatchNormalization"), Found("Dropout"), *HEAD],
    [Found("Rescaling"), Found("RandomFlip"), conv(16), Found("AveragePooling2D"), conv(32), *HEAD],
    [conv(16), conv(32), Found("GlobalAveragePooling2D"), Found("Dense", 64, "relu"), Found("Dropout"), Found("Dense", 5, "softmax")],
], ids=["conv_pool_blocks", "batch_norm_and_dropout", "preprocessing_first", "hidden_dense"])
def test_the_convnet_labs_rule_takes_the_ways_students_stack_convolutions(layers):
    verdict = compare(convnet_rule(), layers)
    assert verdict.ok, verdict.message


@pytest.mark.parametrize("layers", [
    [conv(16), *HEAD],
    [conv(16), Found("MaxPooling2D"), *HEAD],
    [conv(16), Found("BatchNormalization"), *HEAD],
    [Found("Rescaling"), conv(16), *HEAD],
], ids=["alone", "then_pooling", "then_batch_norm", "after_rescaling"])
def test_one_convolution_is_asked_for_another_after_it(layers):
    verdict = compare(convnet_rule(), layers)
    assert not verdict.ok and verdict.message == "expected another Conv2D(relu) after Conv2D(16, relu, kernel_size=3); add one"
    assert verdict.differs_at == [layer.kind for layer in layers].index("Conv2D") + 1  # where the new one goes


def test_the_convnet_labs_rule_names_flatten_and_a_missing_stack():
    flatten = compare(convnet_rule(), [conv(16), conv(32), Found("Flatten"), Found("Dense", 5, "softmax")])
    assert flatten.message == "expected GlobalAveragePooling2D as layer 3; found Flatten"
    # no convolution at all: said as such, in the lab's own words (the check's `expected`), not as "layer 1 differs"
    none = compare(convnet_rule(), [Found("Flatten"), Found("Dense", 5, "softmax")], "a stack of convolutions, then pooling")
    assert none.message == ("the model (Flatten, then Dense(5, softmax)) has no Conv2D(relu) or SeparableConv2D(relu) layer at all; "
                            "it should be a stack of convolutions, then pooling")


def test_a_missing_output_is_not_called_another_hidden_layer():
    rule = parse_rule(["Flatten", "Dense(128, relu)", "Dense(5, softmax)"])
    verdict = compare(rule, [Found("Flatten"), Found("Dense", 128, "relu")])
    assert verdict.message == "expected Dense with 5 units and softmax at the end; the model stops after Dense(128, relu)"
    dropout = compare(parse_rule(["Flatten", "dropout+", "Dense(5, softmax)"]), [Found("Flatten"), Found("Dropout"), Found("Dense", 5, "softmax")])
    assert dropout.ok
    missing = compare(parse_rule(["Flatten", "dropout+", "Dropout", "Dense(5, softmax)"]), [Found("Flatten"), Found("Dropout"), Found("Dense", 5, "softmax")])
    assert missing.message == "expected another Dropout after Dropout; add one"


def test_each_quantifier_takes_exactly_its_count():
    """`?` at most once, `+` at least once, `*` any number: one layer more or fewer than a
    quantifier allows fails, and says where."""
    head = [Found("Dense", 5, "softmax")]
    optional = parse_rule(["Flatten", "Dropout?", "Dense(5, softmax)"])
    assert compare(optional, [Found("Flatten"), *head]).ok and compare(optional, [Found("Flatten"), Found("Dropout"), *head]).ok
    twice = compare(optional, [Found("Flatten"), Found("Dropout"), Found("Dropout"), *head])
    assert not twice.ok and twice.differs_at == 2
    some = parse_rule(["Conv2D+", "Dense(5, softmax)"])
    assert compare(some, [Found("Conv2D"), *head]).ok and compare(some, [Found("Conv2D")] * 4 + head).ok
    assert not compare(some, head).ok
    anything = parse_rule(["Conv2D*", "Dense(5, softmax)"])
    assert compare(anything, head).ok and compare(anything, [Found("Conv2D")] * 7 + head).ok


def test_each_single_change_is_named_with_the_layer_it_is_at():
    """Remove, add, replace or fix: the message a teacher writes, and the layer the scorecard
    points at (the chain's length where the missing layer would go at the end)."""
    head = [Found("Flatten"), Found("Dense", 5, "softmax")]
    cases = [
        ([Found("Dropout"), BASE, *head], RULE, "the model has an extra layer at the start: Dropout; remove it", 0),
        ([BASE, Found("Flatten"), *head], RULE, "the model has an extra layer after Flatten: Flatten; remove it", 2),
        ([BASE, Found("Flatten")], RULE, "expected Dense with 5 units and softmax at the end; the model stops after Flatten", 2),
        ([BASE, Found("Conv2D"), Found("Dense", 5, "softmax")], RULE, "expected Flatten or GlobalAveragePooling2D as layer 2; found Conv2D", 1),
        ([BASE, Found("Flatten"), Found("Dense", 10, "relu")], RULE,
         "expected Dense with 5 units and softmax at the end; found Dense(10, relu): set activation='softmax' and it needs 5 units, one per class", 2),
        ([Found("Flatten")], parse_rule(["Flatten", "Dense(relu)+"]), "expected Dense with relu at the end; the model stops after Flatten", 1),
        ([Found("Flatten"), Found("Dropout"), Found("Dense", 5, "softmax")], parse_rule(["Flatten", "Dropout", "Dropout", "Dense(5, softmax)"]),
         "expected another Dropout after Dropout; add one", 2),
    ]
    for layers, rule, message, at in cases:
        assert compare(rule, layers) == Verdict(False, message, at), layers
