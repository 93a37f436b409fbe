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
    assert "extra layers" in compare(RULE, [BASE, Found("Flatten"), Found("Dense", 5, "softmax"), Found("Dense", 5, "softmax")]).message
    assert "the model stops after Flatten" in compare(RULE, [BASE, Found("Flatten")]).message


def test_unreadable_rule():
    with pytest.raises(RuleError, match="cannot read"):
        parse_rule(["Dense(5, softmax"])
