import pytest

from grader.structure import Found, RuleError, compare, parse_rule

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
    with pytest.raises(RuleError, match="cannot read"):
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
        with pytest.raises(RuleError, match="cannot read"):
            parse_rule(bad)


def test_layer_options_are_matched_as_written():
    rule = parse_rule(["(Conv2D(relu, kernel_size=3) | MaxPooling2D(pool_size=2))+", "GlobalAveragePooling2D", "Dense(5, softmax)"])
    conv = Found("Conv2D", 16, "relu", (("kernel_size", "3"), ("strides", "1"), ("padding", "same")))
    pool = Found("MaxPooling2D", options=(("pool_size", "2"), ("strides", "2"), ("padding", "valid")))
    head = [Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]
    assert compare(rule, [conv, conv, pool, *head]).ok
    wide = Found("Conv2D", 16, "relu", (("kernel_size", "5"), ("strides", "1"), ("padding", "same")))
    assert "found Conv2D(16, relu, kernel_size=5, strides=1, padding=same): it needs kernel_size=3" in compare(rule, [conv, wide, pool, *head]).message


CONVNET = parse_rule(["preprocessing*", "Conv2D(relu)", "(Conv2D(relu) | MaxPooling2D | BatchNormalization | dropout)*", "Conv2D(relu)",
                      "GlobalAveragePooling2D", "(Dense(relu) | dropout)*", "Dense(5, softmax)"])


def test_a_stack_of_convolutions_one_short_asks_for_another():
    conv = Found("Conv2D", 16, "relu", options=(("kernel_size", "3"),))
    verdict = compare(CONVNET, [conv, Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")])
    assert not verdict.ok and verdict.message == "expected another Conv2D(relu) after Conv2D(16, relu, kernel_size=3); add one"
    assert verdict.differs_at == 0
    stack = [conv, Found("MaxPooling2D"), Found("Conv2D", 32, "relu"), Found("BatchNormalization"), Found("Conv2D", 48, "relu")]
    assert compare(CONVNET, [*stack, Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]).ok
    flatten = compare(CONVNET, [*stack, Found("Flatten"), Found("Dense", 5, "softmax")])
    assert "expected GlobalAveragePooling2D as layer 6; found Flatten" in flatten.message
