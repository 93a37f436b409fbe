"""Structure rules written like the lab's instructions, and feedback on where a model differs.

A rule is a list of layer patterns, e.g.
    ["pretrained MobileNetV2(include_top=False)", "Flatten | GlobalAveragePooling2D",
     "Dropout?", "Dense(5, softmax)"]
`|` separates alternatives, a trailing `?` makes a pattern optional, `pretrained`
asks that the base's weights be the pretrained ones. Numbers are units, bare words
activations, `key=value` options.
"""

from __future__ import annotations

import dataclasses
import re

_PATTERN = re.compile(r"^\s*(?P<pretrained>pretrained\s+)?(?P<kind>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<args>[^)]*)\))?\s*$")


class RuleError(ValueError):
    pass


def _layer_text(kind: str, units, activation, options) -> str:
    """'Dense(5, softmax)', 'MobileNetV2(include_top=False)', 'Flatten'."""
    parts = [str(units)] if units is not None else []
    parts += [activation] if activation else []
    parts += [f"{k}={v}" for k, v in options]
    return kind + (f"({', '.join(parts)})" if parts else "")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    kind: str
    units: int | None = None
    activation: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    pretrained: bool = False

    def __str__(self) -> str:
        return ("pretrained " if self.pretrained else "") + _layer_text(self.kind, self.units, self.activation, self.options)

    def describe(self) -> str:
        """In words, for feedback: 'Dense with 5 units and softmax'."""
        if self.kind == "Dense" and self.units is not None:
            return f"Dense with {self.units} units" + (f" and {self.activation}" if self.activation else "")
        return str(self)


@dataclasses.dataclass(frozen=True)
class Pattern:
    alternatives: tuple[LayerSpec, ...]
    optional: bool

    def __str__(self) -> str:
        return " or ".join(str(a) for a in self.alternatives) + (" (optional)" if self.optional else "")

    def describe(self) -> str:
        return " or ".join(a.describe() for a in self.alternatives)


@dataclasses.dataclass(frozen=True)
class Found:
    """One top-level layer of the student's model, as the grader sees it."""

    kind: str
    units: int | None = None
    activation: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    pretrained: bool | None = None
    name: str = ""

    def __str__(self) -> str:
        return _layer_text(self.kind, self.units, self.activation, self.options)


def parse_rule(rule: list[str]) -> tuple[Pattern, ...]:
    if not isinstance(rule, list) or not rule or not all(isinstance(p, str) for p in rule):
        raise RuleError("layers must be a non-empty list of strings")
    return tuple(_parse_pattern(text) for text in rule)


def _parse_pattern(text: str) -> Pattern:
    optional = text.rstrip().endswith("?")
    body = text.rstrip().rstrip("?")
    return Pattern(tuple(_parse_spec(part) for part in body.split("|")), optional)


def _parse_spec(text: str) -> LayerSpec:
    match = _PATTERN.match(text)
    if not match:
        raise RuleError(f"cannot read the layer pattern {text.strip()!r}; write e.g. 'Dense(5, softmax)'")
    units, activation, options = None, None, []
    for arg in filter(None, (a.strip() for a in (match["args"] or "").split(","))):
        if "=" in arg:
            key, value = (s.strip() for s in arg.split("=", 1))
            options.append((key, value))
        elif arg.isdigit():
            units = int(arg)
        else:
            activation = arg
    return LayerSpec(match["kind"], units, activation, tuple(options), bool(match["pretrained"]))


def spec_matches(spec: LayerSpec, found: Found) -> bool:
    if spec.kind != found.kind:
        return False
    if spec.units is not None and spec.units != found.units:
        return False
    if spec.activation is not None and spec.activation != found.activation:
        return False
    found_options = dict(found.options)
    if any(found_options.get(key) != value for key, value in spec.options):
        return False
    return not spec.pretrained or bool(found.pretrained)


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    differs_at: int | None = None  # index of the first layer that differs (len(layers): one is missing)


def compare(patterns: tuple[Pattern, ...], layers: list[Found]) -> Verdict:
    """Match layers against patterns in order; on failure say which layer differs and how."""
    if not layers:
        expected = ", then ".join(p.describe() for p in patterns if not p.optional)
        return Verdict(False, f"the model is empty: put the layers in tf.keras.Sequential([...]): {expected}", 0)
    position = 0
    for index, pattern in enumerate(patterns):
        layer = layers[position] if position < len(layers) else None
        if layer is not None and any(spec_matches(s, layer) for s in pattern.alternatives):
            position += 1
            continue
        if pattern.optional:
            continue
        is_last = index == len(patterns) - 1
        where = " at the end" if is_last else f" as layer {position + 1}"
        if layer is None:
            return Verdict(False, f"expected {pattern.describe()}{where}; the model stops after {layers[-1]}", position)
        return Verdict(False, f"expected {pattern.describe()}{where}; found {layer}{_why(pattern, layer)}", position)
    if position < len(layers):
        extra = ", ".join(str(layer) for layer in layers[position:])
        return Verdict(False, f"the model has extra layers after {layers[position - 1]}: {extra}; the last layer should be {patterns[-1].describe()}", position)
    return Verdict(True, "the model is " + ", then ".join(str(layer) for layer in layers))


def _why(pattern: Pattern, layer: Found) -> str:
    for spec in pattern.alternatives:
        if spec.kind == layer.kind and spec.pretrained and not layer.pretrained:
            return " whose weights are not the pretrained ones (keep the default weights='imagenet')"
        if spec.kind == layer.kind and spec.activation and spec.activation != layer.activation:
            return f": set activation='{spec.activation}'"
        if spec.kind == layer.kind and spec.units is not None and spec.units != layer.units:
            return f": it needs {spec.units} units, one per class"
        mismatched = [f"{k}={v}" for k, v in spec.options if dict(layer.options).get(k) != v]
        if spec.kind == layer.kind and mismatched:
            return f": it needs {', '.join(mismatched)}"
    return ""
