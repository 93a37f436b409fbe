"""The values the grader trains from are its own, whatever a model's config says.

A layer's config can carry numbers: an initializer that holds them (`Constant(k)`, with
`k` fitted anywhere, to the validation files too), or arrays of the layer's own
(`Rescaling(scale=[...])`, `Normalization(mean=..., variance=...)`). Trained from such
values with a learning rate of 0 (or with the head frozen), a model would score what its
author fitted, not what training makes of it. So before the grader trains a copy of a
model, every initializer that carries values is replaced by the layer's own default (drawn,
like every other, right after the run is seeded), the seeds initializers name are dropped
(the run's seed decides), and a config holding an array of more than a few numbers
anywhere is not trained at all (`CarriedValues`, the student's to fix).
"""

from __future__ import annotations

import inspect
from typing import Any

MAX_NUMBERS = 16  # numbers a config may hold in one list: a per-channel scale (3), a shape, a kernel size


class CarriedValues(Exception):
    """The model's config holds arrays of numbers the grader would have to train from; the message says where."""


def decided(config: dict, kind: str) -> tuple[dict, tuple[str, ...]]:
    """A layer's `config` (of class `kind`) with every initializer that carries values
    replaced by the layer's default and every initializer's seed dropped; and what was
    replaced, in words. Raises CarriedValues for an array of numbers anywhere in it."""
    replaced: list[str] = []
    return _layer(config, kind, replaced), tuple(replaced)


def _layer(config: dict, kind: str, replaced: list[str]) -> dict:
    name = str(config.get("name", kind))
    cleaned = {}
    for key, value in config.items():
        if key.endswith("_initializer"):
            if _carries(value):
                cleaned[key] = _default(kind, key)
                replaced.append(f"{name}'s {key} ({_kind(value)})")
            else:
                cleaned[key] = _unseeded(value)
        elif key == "layers" and isinstance(value, list):  # a nested Sequential or functional model
            cleaned[key] = [_nested(item, replaced) for item in value]
        else:
            _no_arrays(value, f"{name}'s {key}")
            cleaned[key] = value
    return cleaned


def _nested(item: Any, replaced: list[str]) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
        return item
    # how a nested model calls its layers carries numbers too (a `mask=[...]` a layer is called
    # with, fitted elsewhere, is a classifier written into the graph): held to the same rule
    _no_arrays(item.get("inbound_nodes"), f"the call of {item['config'].get('name', 'a layer')} inside a nested model")
    return {**item, "config": _layer(item["config"], str(item.get("class_name")), replaced)}


def _carries(initializer: Any) -> bool:
    """An initializer given by value: Constant (of any value), or one whose config holds a list."""
    if not isinstance(initializer, dict):
        return False  # a name ("glorot_uniform", "zeros", "constant": Constant(0))
    if initializer.get("class_name") == "Constant":
        return True
    config = initializer.get("config")
    return isinstance(config, dict) and any(isinstance(v, (list, dict)) for v in config.values())


def _kind(initializer: dict) -> str:
    return str(initializer.get("class_name", "an initializer"))


def _unseeded(initializer: Any) -> Any:
    config = initializer.get("config") if isinstance(initializer, dict) else None
    if isinstance(config, dict) and config.get("seed") is not None:
        return {**initializer, "config": {**config, "seed": None}}
    return initializer


def _default(kind: str, key: str) -> Any:
    """The initializer a layer of class `kind` uses for `key` when none is given."""
    import keras

    layer = getattr(keras.layers, kind, None)
    if layer is not None:
        parameter = inspect.signature(layer.__init__).parameters.get(key)
        if parameter is not None and parameter.default is not inspect.Parameter.empty and parameter.default is not None:
            return parameter.default
    return "glorot_uniform" if "kernel" in key else "zeros"


def _no_arrays(value: Any, where: str) -> None:
    count = _numbers(value)
    if count > MAX_NUMBERS:
        raise CarriedValues(
            f"the model's config holds {count:,} numbers in {where}: the grader trains every model from values it "
            "decides itself (the lab's layers and their own initialisation), never from arrays written into the "
            "model; leave such fixed arrays out"
        )


def _numbers(value: Any) -> int:
    """How many numbers a list holds, nested lists included (0 for anything that is not a list of numbers)."""
    if isinstance(value, dict):
        return max((_numbers(v) for v in value.values()), default=0)
    if not isinstance(value, (list, tuple)):
        return 0
    total = 0
    for item in value:
        if isinstance(item, (list, tuple)):
            total += _numbers(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            total += 1
        elif isinstance(item, dict):
            total = max(total, _numbers(item))
    return total
