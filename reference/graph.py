"""A model as the grader reads it: one chain of layers from the image to the prediction.

Students write the same model many ways: a `Sequential` list, `model.add(...)`, the
functional API from `keras.Input`, a nested `Sequential` of augmentation layers in
front of the base. All of these are one chain of layers. Everything that judges or
trains a model reads this chain, so the structure rules, the frozen-base check, the
fast path and the trusted training agree on what the model is and where its base is.

The base is found by one predicate, given by the lab: by default a nested model whose
variables have the shapes of the pretrained base the grader holds (whatever the
student named it, and whether or not its weights are the pretrained ones).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Chain:
    """The model's layers in order: no InputLayer, nested models other than the base inlined."""

    layers: tuple
    base: int | None = None  # index of the pretrained base in `layers`
    problem: str = ""  # why the model is not one chain of layers ("" if it is)

    @property
    def base_layer(self):
        return None if self.base is None else self.layers[self.base]

    @property
    def head(self) -> tuple:
        """The layers after the base (all of them without a base)."""
        return self.layers if self.base is None else self.layers[self.base + 1 :]


def shapes_of(weights) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(d) for d in getattr(w, "shape", ())) for w in weights)


def base_by_shapes(reference_weights, architectures: Callable[[], Sequence[tuple]] | None = None) -> Callable[[object], bool]:
    """The default predicate: a nested model whose variables have the reference base's
    shapes and, given `architectures` (the reference base's `architecture`s: without
    pooling and with each pooling its application allows), whose layers and connections
    are one of them, names and sizes aside. A model with the base's weights and layers of
    its own in its graph (values fitted elsewhere, written into it) is not the base."""
    expected = shapes_of(reference_weights)

    def is_base(layer) -> bool:
        if not (is_nested(layer) and len(layer.weights) == len(expected) and shapes_of(layer.weights) == expected):
            return False
        return architectures is None or architecture(layer) in architectures()

    return is_base


SIZE_KEYS = ("name", "trainable", "batch_shape", "batch_input_shape", "build_config")


def architecture(model) -> tuple:
    """A nested model's layers and how they are connected, as a value two builds of the same
    application share whatever their names and input size: each layer's class, its config
    (but its name, trainable flag and size), and its calls (each input by the place of the
    layer it comes from, every other argument as written)."""
    import json

    config = model.get_config()
    layers = config.get("layers", []) if isinstance(config, dict) else []
    place = {layer.get("name"): n for n, layer in enumerate(layers) if isinstance(layer, dict)}

    def calls(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                history = (value.get("config") or {}).get("keras_history") or ["", 0, 0]
                return ["tensor", place.get(history[0], -1), *history[1:]]
            return {key: calls(item) for key, item in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [calls(item) for item in value]
        return value

    found = []
    for layer in layers:
        if not isinstance(layer, dict):
            return ("not a model's config",)
        inner = {key: value for key, value in (layer.get("config") or {}).items() if key not in SIZE_KEYS}
        found.append(json.dumps([layer.get("class_name"), inner, calls(layer.get("inbound_nodes", []))], sort_keys=True, default=str))
    ends = [[place.get(entry[0], -1) for entry in config.get(key, []) if isinstance(entry, list) and entry]
            for key in ("input_layers", "output_layers")] if isinstance(config, dict) else []
    return (*found, json.dumps(ends))


def is_nested(layer) -> bool:
    return hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional", "Model")


def chain(model, is_base: Callable[[object], bool]) -> Chain:
    """`model` as one chain of layers, with its base located."""
    layers = _layers(model)
    if isinstance(layers, str):
        return Chain((), None, layers)
    flat: list = []
    for layer in layers:
        flat += _inline(layer, is_base)
    bases = [index for index, layer in enumerate(flat) if is_base(layer)]
    return Chain(tuple(flat), bases[0] if bases else None)


def _inline(layer, is_base) -> list:
    """A nested model other than the base stands for its own layers (when they are a chain)."""
    if not is_nested(layer) or is_base(layer):
        return [layer]
    inner = _layers(layer)
    if isinstance(inner, str):
        return [layer]
    flat: list = []
    for item in inner:
        flat += _inline(item, is_base)
    return flat


def _layers(model) -> Sequence | str:
    """The layers of a model in the order data flows through them, or why they are not a chain."""
    kind = type(model).__name__
    if kind == "Sequential":
        return list(model.layers)
    if kind not in ("Functional", "Model"):
        return [model]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return f"the model has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); the lab's model takes one image and gives one prediction"
    found, tensor = [], model.outputs[0]
    while True:
        layer, node_index, _ = tensor._keras_history
        if type(layer).__name__ == "InputLayer":
            break
        arguments = layer._inbound_nodes[node_index].arguments.keras_tensors
        if len(arguments) != 1:
            return f"{layer.name} combines {len(arguments)} inputs; the grader reads models that are one chain of layers from the image to the prediction"
        found.append(layer)
        tensor = arguments[0]
    found.reverse()
    others = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if len(found) != len(others):
        unused = ", ".join(layer.name for layer in others if layer not in found)
        return f"the model has layers off the path from its input to its output ({unused}); the grader reads models that are one chain of layers"
    return found
