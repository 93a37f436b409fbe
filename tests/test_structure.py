import dataclasses

import pytest

from grader.faults import ManifestError
from grader.grading.structure import Comparison, Found, compare, parse_rule

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
        assert compare(rule, layers) == Comparison(False, message, at), layers


@pytest.mark.parametrize("rule, why", [
    (["(Dense | Flatten"], "'(Dense | Flatten': a group is not closed;"),
    (["Dense(5, softmax) Flatten)"], "'Dense(5, softmax) Flatten)': unexpected ' Flatten';"),
    (["hidden*"], "'hidden*': 'hidden' is not a layer family (known: preprocessing, dropout);"),
    (["Dense |"], "'Dense |'; write e.g. 'Dense(5, softmax)'"),  # nothing more to say than the example
    ([""], "''; write e.g. 'Dense(5, softmax)'"),
], ids=["open_group", "stray_token", "unknown_family", "dangling_bar", "empty_pattern"])
def test_a_layer_pattern_that_cannot_be_read_names_it_and_says_why(rule, why):
    with pytest.raises(ManifestError) as error:
        parse_rule(rule)
    assert f"cannot read the layer pattern {why}" in str(error.value)


@pytest.mark.parametrize("layers", [[], "Dense", ["Dense", 5], None], ids=["empty", "a_string", "not_all_strings", "none"])
def test_layers_that_are_not_a_list_of_patterns_are_refused(layers):
    with pytest.raises(ManifestError, match="^layers must be a non-empty list of strings"):
        parse_rule(layers)


def test_an_options_value_is_everything_after_its_first_equals_sign():
    rule = parse_rule(["Lambda(name=x=1)"])
    assert compare(rule, [Found("Lambda", options=(("name", "x=1"),))]).ok
    assert not compare(rule, [Found("Lambda", options=(("name", "x"),))]).ok


def test_an_empty_model_is_told_only_the_steps_it_must_have():
    quantified = compare(parse_rule(["Rescaling*", "Conv2D+", "Dropout?", "Dense(5, softmax)"]), [])
    assert quantified.ok is False and quantified.differs_at == 0
    assert quantified.message.endswith(": Conv2D, then Dense with 5 units and softmax")
    blocks = compare(parse_rule(["(Conv2D, MaxPooling2D)+", "GlobalAveragePooling2D"]), [])
    assert blocks.message.endswith(": Conv2D, then MaxPooling2D, then GlobalAveragePooling2D")


def test_a_matching_model_is_said_back_layer_by_layer():
    verdict = compare(RULE, [BASE, Found("Flatten"), Found("Dense", 5, "softmax")])
    assert verdict == Comparison(True, "the model is MobileNetV2(include_top=False, input=96x96x3), then Flatten, then Dense(5, softmax)")


def test_a_layer_of_the_right_kind_is_told_every_setting_it_needs():
    unpretrained = Found("MobileNetV2", options=BASE.options, pretrained=False)
    cases = [
        (RULE, [unpretrained, Found("Flatten"), Found("Dense", 5, "softmax")],
         "expected pretrained MobileNetV2(include_top=False) as layer 1; found MobileNetV2(include_top=False, input=96x96x3) "
         "whose weights are not the pretrained ones (load the base with its pretrained weights)", 0),
        (parse_rule(["Conv2D(32, relu)", "Flatten"]), [Found("Conv2D", 16, "relu"), Found("Flatten")],
         "expected Conv2D(32, relu) as layer 1; found Conv2D(16, relu): it needs 32 units", 0),
        (parse_rule(["Flatten", "Dense(5)"]), [Found("Flatten"), Found("Dense", 3)],
         "expected Dense with 5 units at the end; found Dense(3): it needs 5 units, one per class", 1),
        # a hidden layer's units are not the classes
        (parse_rule(["Flatten", "Dense(64, relu)", "Dense(5, softmax)"]), [Found("Flatten"), Found("Dense", 32, "relu"), Found("Dense", 5, "softmax")],
         "expected Dense with 64 units and relu as layer 2; found Dense(32, relu): it needs 64 units", 1),
        # only the options that differ are named, all of them
        (parse_rule(["Conv2D(relu, kernel_size=3)", "Flatten"]), [Found("Conv2D", 16, "linear", (("kernel_size", "3"),)), Found("Flatten")],
         "expected Conv2D(relu, kernel_size=3) as layer 1; found Conv2D(16, linear, kernel_size=3): set activation='relu'", 0),
        (parse_rule(["Conv2D(relu, kernel_size=3, padding=same)", "Flatten"]),
         [Found("Conv2D", 16, "relu", (("kernel_size", "5"), ("padding", "valid"))), Found("Flatten")],
         "expected Conv2D(relu, kernel_size=3, padding=same) as layer 1; found Conv2D(16, relu, kernel_size=5, padding=valid): "
         "it needs kernel_size=3, padding=same", 0),
        (parse_rule(["Conv2D(32, relu, kernel_size=3)", "Flatten"]), [Found("Conv2D", 16, "linear", (("kernel_size", "5"),)), Found("Flatten")],
         "expected Conv2D(32, relu, kernel_size=3) as layer 1; found Conv2D(16, linear, kernel_size=5): "
         "set activation='relu' and it needs 32 units and it needs kernel_size=3", 0),
        # a layer of a family is of the family's kind: it is fixed, not replaced
        (parse_rule(["Flatten", "dropout(rate=0.5)", "Dense(5, softmax)"]), [Found("Flatten"), Found("Dropout", options=(("rate", "0.2"),)), Found("Dense", 5, "softmax")],
         "expected a dropout layer as layer 2; found Dropout(rate=0.2): it needs rate=0.5", 1),
    ]
    for rule, layers, message, at in cases:
        assert compare(rule, layers) == Comparison(False, message, at), layers


def test_a_layer_is_pointed_at_by_its_place_in_the_models_chain_and_said_with_its_note():
    """A base built with pooling='max' comes back as the base, then that pooling, both at the
    base's place in the chain; the next layer's place is its own."""
    rule = parse_rule(["pretrained MobileNetV2(include_top=False)", "Flatten", "Dense(5, softmax)"])
    own_pooling = Found("GlobalMaxPooling2D", index=0, note="the base's own pooling='max'")
    verdict = compare(rule, [dataclasses.replace(BASE, index=0), own_pooling, Found("Dense", 5, "softmax", index=1)])
    assert verdict == Comparison(False, "expected Flatten as layer 2; found GlobalMaxPooling2D (the base's own pooling='max')", 0)
    after_rescaling = [Found("Flatten", index=1), Found("Dense", 64, "relu", index=2), Found("Dense", 32, "relu", index=3), Found("Dense", 5, "softmax", index=4)]
    assert compare(parse_rule(["Flatten", "Conv2D+", "Dense(5, softmax)"]), after_rescaling).differs_at == 1


def test_the_choice_a_missing_layer_belongs_to_is_named():
    blocks = parse_rule(["((Conv2D | SeparableConv2D), MaxPooling2D)+", "GlobalAveragePooling2D"])
    assert compare(blocks, [Found("Dense"), Found("MaxPooling2D"), Found("GlobalAveragePooling2D")]).message == (
        "expected Conv2D or SeparableConv2D as layer 1; found Dense")
    hidden = parse_rule(["Flatten", "(Dense(relu) | Dropout)+", "Dense(5, softmax)"])
    assert compare(hidden, [Found("Flatten"), Found("Conv2D"), Found("Dense", 5, "softmax")]).message == (
        "expected Dense with relu or Dropout as layer 2; found Conv2D")
    pairs = parse_rule(["(Conv2D, MaxPooling2D)+", "GlobalAveragePooling2D", "Dense(5, softmax)"])
    assert compare(pairs, [Found("Conv2D"), Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]) == Comparison(
        False, "expected MaxPooling2D as layer 2, before GlobalAveragePooling2D; add it", 1)


def test_a_missing_layer_is_added_where_it_goes_and_an_allowed_layer_is_replaced_last():
    cases = [
        # a missing plain layer at the end
        ([Found("Conv2D")], parse_rule(["Conv2D", "GlobalAveragePooling2D"]),
         "expected GlobalAveragePooling2D at the end; the model stops after Conv2D", 1),
        # one more of a family: said without its article
        ([Found("Flatten"), Found("Dropout"), Found("Dense", 5, "softmax")], parse_rule(["Flatten", "dropout", "dropout", "Dense(5, softmax)"]),
         "expected another dropout layer after Dropout; add one", 2),
        # one more after the last layer: it goes where the chain ends
        ([Found("Flatten"), Found("Dense", 64, "relu"), Found("Dense", 64, "relu")], parse_rule(["Flatten", "Dense(relu)", "Dense(relu)", "Dense(relu)"]),
         "expected another Dense with relu after Dense(64, relu); add one", 3),
        # the Dropout is allowed: the Flatten before it is what is missing
        ([Found("Dropout"), Found("Dense", 5, "softmax")], parse_rule(["Flatten", "Dropout?", "Dense(5, softmax)"]),
         "expected Flatten as layer 1, before Dropout; add it", 0),
        # nothing to add: the allowed layer in the output's place is replaced
        ([BASE, Found("Flatten"), Found("Flatten")], RULE, "expected Dense with 5 units and softmax at the end; found Flatten", 2),
    ]
    for layers, rule, message, at in cases:
        assert compare(rule, layers) == Comparison(False, message, at), layers


def test_the_fix_with_fewest_changes_is_named_and_of_two_alike_the_first_written():
    binary_or_softmax = parse_rule(["Flatten", "Dense(2, softmax) | Dense(1, sigmoid)"])
    relu = compare(binary_or_softmax, [Found("Flatten"), Found("Dense", 1, "relu")])
    assert relu.message.endswith("found Dense(1, relu): set activation='sigmoid'")
    softmax = compare(binary_or_softmax, [Found("Flatten"), Found("Dense", 1, "softmax")])
    assert softmax.message.endswith("found Dense(1, softmax): it needs 2 units, one per class")


def test_the_labs_words_for_pretrained_weights_are_in_every_fix_named():
    fix = "pass weights='imagenet'"
    unpretrained = Found("MobileNetV2", options=BASE.options, pretrained=False)
    base_first = compare(RULE, [unpretrained, Found("Flatten"), Found("Dense", 5, "relu")], pretrained_fix=fix)
    assert base_first.ok is False and base_first.differs_at == 0
    assert f"not the pretrained ones ({fix}); and expected Dense with 5 units and softmax at the end" in base_first.message
    scaled = parse_rule(["Rescaling(offset=-1)", "pretrained MobileNetV2(include_top=False)", "Flatten", "Dense(5, softmax)"])
    base_second = compare(scaled, [Found("Rescaling", options=(("offset", "0"),)), unpretrained, Found("Flatten"), Found("Dense", 5, "softmax")], pretrained_fix=fix)
    assert base_second.ok is False and base_second.differs_at == 0
    assert base_second.message.startswith("expected Rescaling(offset=-1) as layer 1; found Rescaling(offset=0): it needs offset=-1; and ")
    assert base_second.message.endswith(f"not the pretrained ones ({fix})")


def test_a_model_no_one_change_fixes_is_told_where_it_leaves_the_rule():
    cases = [
        ([BASE, Found("Flatten"), Found("Dense", 5, "softmax"), Found("Flatten"), Found("Dense", 5, "softmax")], RULE,
         "the layers after Dense(5, softmax) do not follow the rule: found Flatten, Dense(5, softmax); the model should be "
         "pretrained MobileNetV2(include_top=False), then Flatten or GlobalAveragePooling2D, then Dense with 5 units and softmax", 3),
        ([Found("Dense", 64, "relu")], parse_rule(["Dense(relu)", "Dense(relu)", "Dense(5, softmax)"]),
         "the model stops after Dense(64, relu); it should be Dense with relu, then Dense with relu, then Dense with 5 units and softmax", 1),
        ([Found("Dense", 5, "softmax"), Found("Dense", 3, "relu"), Found("Flatten")], parse_rule(["Flatten", "Dense(5, softmax)"]),
         "expected Flatten as layer 1; found Dense(5, softmax)", 0),
        # GaussianNoise is of the dropout family: the step is there, not missing
        ([Found("Flatten"), Found("GaussianNoise"), Found("Dense", 5, "relu"), Found("Dense", 3, "relu")], parse_rule(["Flatten", "dropout+", "Dense(5, softmax)"]),
         "the layers after GaussianNoise do not follow the rule: found Dense(5, relu), Dense(3, relu); "
         "the model should be Flatten, then a dropout layer, then Dense with 5 units and softmax", 2),
        # no layer at all of a step: said as such, pointing at the model's first layer
        ([Found("Flatten"), Found("Dense", 64, "relu"), Found("Dense", 32, "relu"), Found("Dense", 5, "softmax")], parse_rule(["Flatten", "Conv2D+", "Dense(5, softmax)"]),
         "the model (Flatten, then Dense(64, relu), then Dense(32, relu), then Dense(5, softmax)) has no Conv2D layer at all; "
         "it should be Flatten, then Conv2D, then Dense with 5 units and softmax", 0),
    ]
    for layers, rule, message, at in cases:
        assert compare(rule, layers) == Comparison(False, message, at), layers


def test_a_missing_family_and_a_single_unit_are_said_in_plain_words():
    """A step of a family ("dropout+") with no layer at all is named by the family ("no dropout
    layer", not "no a dropout layer layer"), and one unit is "1 unit"."""
    rule = parse_rule(["Conv2D(relu)", "dropout+", "Dense(1, sigmoid)"])
    verdict = compare(rule, [Found("Conv2D", units=8, activation="relu", index=0),
                                       Found("Dense", units=4, activation="sigmoid", index=1)])  # two changes away
    assert "has no dropout layer at all" in verdict.message and "a dropout layer layer" not in verdict.message
    assert "Dense with 1 unit and sigmoid" in verdict.message
    wrong_units = compare(parse_rule(["Dense(1, sigmoid)"]), [Found("Dense", units=3, activation="sigmoid", index=0)])
    assert "it needs 1 unit, one per class" in wrong_units.message and "1 units" not in wrong_units.message
    either = compare(parse_rule(["Conv2D(relu)", "(dropout | BatchNormalization)+", "Dense(1, sigmoid)"]),
                     [Found("Conv2D", units=8, activation="relu", index=0), Found("Dense", units=4, activation="sigmoid", index=1)])
    assert "has no dropout or BatchNormalization layer at all" in either.message  # each choice in plain words
