"""Structure rules written like the lab's instructions, and feedback on where a model differs.

A rule is a list of steps, each a layer pattern, e.g.
    ["preprocessing*", "pretrained <Base>(include_top=False)",
     "Flatten | GlobalAveragePooling2D", "(Dense(relu) | dropout)*", "Dense(5, softmax)"]

- `A | B`: either; `( ... )`: a group, whose items may be a sequence (`(Conv2D, MaxPooling2D)`).
- A trailing `?` makes a step optional, `*` repeats it any number of times, `+` once or more.
- `Kind(args)`: a layer kind; a number is its units (or filters), a bare word its
  activation, `key=value` an option; `pretrained` asks that the base's weights be the
  pretrained ones.
- Lower-case names stand for families of layers: `preprocessing` (rescaling, resizing
  and augmentation layers), `dropout` (the dropout and noise layers).

A model is matched as a whole, like a regular expression over its layers. When it does
not match, the feedback names the one change that would make it match, if there is one
(set a layer's activation, remove an extra layer, add a missing one), else the first
layer from which no match can continue.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from grader.faults import ManifestError  # a structure rule that cannot be read is the instructor's to fix

PRETRAINED_FIX = "load the base with its pretrained weights"  # a lab says how, in its own words ([lab.hints] pretrained_weights)

FAMILIES = {
    "preprocessing": frozenset(
        "Rescaling Resizing Normalization CenterCrop RandomCrop RandomFlip RandomRotation RandomZoom "
        "RandomTranslation RandomContrast RandomBrightness RandomHeight RandomWidth".split()
    ),
    "dropout": frozenset("Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianDropout GaussianNoise AlphaDropout".split()),
}
_SPEC = re.compile(r"^\s*(?P<pretrained>pretrained\s+)?(?P<kind>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<args>[^()]*)\))?\s*$")


def _layer_text(kind: str, units, activation, options) -> str:
    """'Dense(5, softmax)', '<Base>(include_top=False)', 'Flatten'."""
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

    def describe(self, bare: bool = False) -> str:
        """In words, for feedback: 'Dense with 5 units and softmax' (`bare`: a family by its
        name alone, 'dropout', where the sentence says "layer" itself)."""
        if self.kind in FAMILIES:
            return self.kind if bare else f"a {self.kind} layer"
        if self.kind == "Dense" and (self.units is not None or self.activation):
            with_units = f" with {_units(self.units)}" if self.units is not None else ""
            joined = " and " if self.units is not None else " with "
            return "Dense" + with_units + (f"{joined}{self.activation}" if self.activation else "")
        return str(self)

    def matches(self, found: "Found") -> bool:
        if found.kind != self.kind and found.kind not in FAMILIES.get(self.kind, ()):
            return False
        if self.units is not None and self.units != found.units:
            return False
        if self.activation is not None and self.activation != found.activation:
            return False
        if any(dict(found.options).get(key) != value for key, value in self.options):
            return False
        return not self.pretrained or bool(found.pretrained)

    def mismatches(self, found: "Found", pretrained_fix: str = PRETRAINED_FIX) -> list[str]:
        """What would have to change in `found` (a layer of the same kind) to match
        (`pretrained_fix`: how the lab's base gets its pretrained weights, in the lab's words)."""
        problems = []
        if self.pretrained and not found.pretrained:
            problems.append(f" whose weights are not the pretrained ones ({pretrained_fix})")
        if self.activation is not None and self.activation != found.activation:
            problems.append(f": set activation='{self.activation}'")
        if self.units is not None and self.units != found.units:
            problems.append(f": it needs {_units(self.units)}")
        wrong = [f"{k}={v}" for k, v in self.options if dict(found.options).get(k) != v]
        if wrong:
            problems.append(f": it needs {', '.join(wrong)}")
        return problems


@dataclasses.dataclass(frozen=True)
class Found:
    """One layer of the student's model as the grader sees it (an activation layer that
    follows a linear one is folded into it)."""

    kind: str
    units: int | None = None
    activation: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    pretrained: bool | None = None
    name: str = ""
    index: int = -1  # position of its (first) layer in the model's chain of layers (-1: its place in the list)
    note: str = ""  # said after the layer, e.g. how its activation was read

    def __str__(self) -> str:
        return _layer_text(self.kind, self.units, self.activation, self.options) + (f" ({self.note})" if self.note else "")


# --- the rule as a small regular expression over layers ------------------------------


@dataclasses.dataclass(frozen=True)
class Seq:
    items: tuple


@dataclasses.dataclass(frozen=True)
class Alt:
    options: tuple


@dataclasses.dataclass(frozen=True)
class Repeat:
    node: object
    low: int
    high: int | None  # None: no upper bound


@dataclasses.dataclass(frozen=True)
class Rule:
    steps: tuple  # one node per step of the rule as written
    texts: tuple[str, ...]

    def specs(self) -> list[LayerSpec]:
        """Every layer pattern of the rule, in the order written."""
        found: list[LayerSpec] = []

        def walk(node) -> None:
            if isinstance(node, LayerSpec):
                found.append(node)
            elif isinstance(node, Seq):
                for item in node.items:
                    walk(item)
            elif isinstance(node, Alt):
                for option in node.options:
                    walk(option)
            elif isinstance(node, Repeat):
                walk(node.node)

        for step in self.steps:
            walk(step)
        return found

    def alternatives(self, spec: LayerSpec) -> str:
        """In words, the choice `spec` is one of ('Flatten or GlobalAveragePooling2D')."""

        def search(node, inside):
            if node is spec:
                return inside
            children = node.items if isinstance(node, Seq) else node.options if isinstance(node, Alt) else (node.node,) if isinstance(node, Repeat) else ()
            for child in children:
                found = search(child, node if isinstance(node, Alt) else inside)
                if found is not None:
                    return found
            return None

        for step in self.steps:
            choice = search(step, None)
            if choice is not None:
                return " or ".join(_words(option) for option in choice.options)
        return spec.describe()

    def required(self) -> list[str]:
        """The steps a model must have, in words (for an empty model)."""
        return [_words(step) for step in self.steps if not (isinstance(step, Repeat) and step.low == 0)]


def _words(node, bare: bool = False) -> str:
    if isinstance(node, LayerSpec):
        return node.describe(bare)
    if isinstance(node, Alt):
        return " or ".join(_words(option, bare) for option in node.options)
    if isinstance(node, Seq):
        return ", then ".join(_words(item, bare) for item in node.items)
    return _words(node.node, bare)


def _units(count: int) -> str:
    return f"{count} unit" + ("" if count == 1 else "s")


def parse_rule(rule: list[str]) -> Rule:
    if not isinstance(rule, (list, tuple)) or not rule or not all(isinstance(p, str) for p in rule):
        raise ManifestError("layers must be a non-empty list of strings")
    return Rule(tuple(_Parser(text).step() for text in rule), tuple(rule))


class _Parser:
    """step := alternation quantifier? ; alternation := sequence ('|' sequence)* ;
    sequence := item (',' item)* ; item := '(' alternation ')' quantifier? | spec"""

    def __init__(self, text: str):
        self.text, self.tokens, self.at = text, re.findall(r"\(|\)|\||,|[?*+]|[^()|,?*+]+(?:\([^()]*\))?", text), 0

    def fail(self, why: str = "") -> ManifestError:
        return ManifestError(f"cannot read the layer pattern {self.text.strip()!r}{': ' + why if why else ''}; write e.g. 'Dense(5, softmax)' or '(Dense(relu) | Dropout)*'")

    def peek(self) -> str | None:
        while self.at < len(self.tokens) and not self.tokens[self.at].strip():
            self.at += 1
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        self.at += 1
        return token

    def step(self):
        node = self._quantified(self.alternation())
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return node

    def alternation(self):
        return self._joined("|", self.sequence, Alt)

    def sequence(self):
        return self._joined(",", self.item, Seq)

    def _joined(self, separator: str, part, kind):
        parts = [part()]
        while self.peek() == separator:
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else kind(tuple(parts))

    def item(self):
        token = self.take()
        if token == "(":
            node = self.alternation()
            if self.take() != ")":
                raise self.fail("a group is not closed")
            return self._quantified(node)
        if token is None or token in ")|,?*+":
            raise self.fail()
        return self._quantified(_parse_spec(token, self))

    def _quantified(self, node):
        bounds = {"?": (0, 1), "*": (0, None), "+": (1, None)}.get(self.peek() or "")
        if bounds is None:
            return node
        self.take()
        return Repeat(node, *bounds)


def _parse_spec(text: str, parser: _Parser) -> LayerSpec:
    match = _SPEC.match(text)
    if not match:
        raise parser.fail()
    units, activation, options = None, None, []
    for arg in filter(None, (a.strip() for a in (match["args"] or "").split(","))):
        if "=" in arg:
            key, value = (s.strip() for s in arg.split("=", 1))
            options.append((key, value))
        elif arg.isdigit():
            units = int(arg)
        else:
            activation = arg
    kind = match["kind"]
    if kind[0].islower() and kind not in FAMILIES:
        raise parser.fail(f"{kind!r} is not a layer family (known: {', '.join(FAMILIES)})")
    return LayerSpec(kind, units, activation, tuple(options), bool(match["pretrained"]))


# --- matching ------------------------------------------------------------------------


class _Matcher:
    """All the ways the rule can consume the layers, as sets of end positions.

    `fixed` pins layer positions to one spec (a layer imagined changed to match it)."""

    def __init__(self, rule: Rule, layers: list, fixed: dict[int, LayerSpec] | None = None):
        self.rule, self.layers, self.fixed = rule, layers, fixed or {}
        self.ends = functools.lru_cache(maxsize=None)(self._ends)

    def accepts(self, layer: int, spec: LayerSpec) -> bool:
        if layer in self.fixed:
            return self.fixed[layer] is spec
        return spec.matches(self.layers[layer])

    def _ends(self, node, start: int) -> frozenset:
        if isinstance(node, LayerSpec):
            return frozenset([start + 1]) if start < len(self.layers) and self.accepts(start, node) else frozenset()
        if isinstance(node, Seq):
            positions = frozenset([start])
            for item in node.items:
                positions = frozenset(end for position in positions for end in self.ends(item, position))
            return positions
        if isinstance(node, Alt):
            return frozenset(end for option in node.options for end in self.ends(option, start))
        # Repeat: every round must consume a layer, so the rounds end within len(layers).
        reached, frontier, count = {start} if node.low == 0 else set(), {start}, 0
        while frontier and (node.high is None or count < node.high):
            count += 1
            frontier = {end for position in frontier for end in self.ends(node.node, position) if end > position}
            if count >= node.low:
                reached |= frontier
        return frozenset(reached)

    def full(self) -> bool:
        return len(self.layers) in self.prefixes()[-1]

    def prefixes(self) -> list[frozenset]:
        """After each step of the rule: the positions the steps so far can reach."""
        positions, reached = frozenset([0]), []
        for step in self.rule.steps:
            positions = frozenset(end for position in positions for end in self.ends(step, position))
            reached.append(positions)
        return reached


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How a model compares with a rule: whether it matches, what to tell the student, where it differs."""

    ok: bool
    message: str
    differs_at: int | None = None  # chain index of the first layer that differs (the chain's length: one is missing)


def compare(rule: Rule, layers: list[Found], expected: str = "", pretrained_fix: str = PRETRAINED_FIX) -> Comparison:
    """Match the layers against the rule; on failure say which layer differs and how.
    `expected`: the model the lab asks for, in the lab's own words (else the rule's);
    `pretrained_fix`: how the lab's base gets its pretrained weights, in the lab's words."""
    layers = [layer if layer.index >= 0 else dataclasses.replace(layer, index=n) for n, layer in enumerate(layers)]
    should = expected or ", then ".join(rule.required())
    if not layers:
        return Comparison(False, f"the model is empty: put the layers in tf.keras.Sequential([...]): {should}", 0)
    if _Matcher(rule, layers).full():
        return Comparison(True, "the model is " + ", then ".join(str(layer) for layer in layers))
    return (_one_change(rule, layers, pretrained_fix) or _two_fixes(rule, layers, pretrained_fix)
            or _none_of_a_step(rule, layers, should)
            or _first_difference(rule, layers, should))


def _none_of_a_step(rule: Rule, layers: list[Found], should: str) -> Comparison | None:
    """A step the model must have, of which it has no layer of any kind the step allows
    (no convolution at all in a convnet lab): say what is missing, in the lab's words."""
    kinds = {layer.kind for layer in layers}
    for step in rule.steps:
        if isinstance(step, Repeat) and step.low == 0:
            continue
        allowed = {spec.kind for spec in Rule((step,), ()).specs()}
        families = {kind for spec in allowed for kind in FAMILIES.get(spec, ())}
        if allowed and not (kinds & (allowed | families)):
            found = ", then ".join(str(layer) for layer in layers)
            return Comparison(False, f"the model ({found}) has no {_words(step, bare=True)} layer at all; it should be {should}", layers[0].index)
    return None


def _where(position: int, count: int) -> str:
    return " at the end" if position == count - 1 else f" as layer {position + 1}"


def _one_change(rule: Rule, layers: list[Found], pretrained_fix: str) -> Comparison | None:
    """The single change that makes the model match: fix a layer of the right kind, else
    remove an extra layer, else replace a layer by another kind, else add a missing one."""
    specs = rule.specs()
    fixes, replacements = [], []
    for position, layer in enumerate(layers):
        for spec in specs:
            if _Matcher(rule, layers, {position: spec}).full():
                if _same_kind(spec, layer):
                    fixes.append((len(spec.mismatches(layer)), position, spec))
                else:
                    replacements.append((position, spec))
    if fixes:
        _, position, spec = min(fixes, key=lambda fix: fix[:2])
        return Comparison(False, _fix_text(spec, layers, position, pretrained_fix), layers[position].index)
    for position, layer in reversed(list(enumerate(layers))):  # of two alike, the second is the extra one
        if _Matcher(rule, layers[:position] + layers[position + 1 :]).full():
            before = f" after {layers[position - 1]}" if position else " at the start"
            return Comparison(False, f"the model has an extra layer{before}: {layer}; remove it", layer.index)
    insertions = [(position, spec) for position in range(len(layers) + 1) for spec in specs
                  if _Matcher(rule, layers[:position] + [Found(spec.kind)] + layers[position:], {position: spec}).full()]
    # one more of a repeated step reads best after the last layer it already matches ("add another")
    repeated = [(p, spec) for p, spec in insertions if p and spec.matches(layers[p - 1])]
    if repeated:
        position, spec = repeated[-1]
        words = spec.describe().removeprefix("a ")
        return Comparison(False, f"expected another {words} after {layers[position - 1]}; add one", layers[position].index if position < len(layers) else layers[-1].index + 1)
    # replacing a layer the rule allows somewhere is rarely the fix: those come last
    replacements.sort(key=lambda r: any(spec.matches(layers[r[0]]) for spec in specs))
    if replacements and not any(spec.matches(layers[replacements[0][0]]) for spec in specs):
        position, spec = replacements[0]
        return Comparison(False, f"expected {rule.alternatives(spec)}{_where(position, len(layers))}; found {layers[position]}", layers[position].index)
    for position, spec in insertions:
        if position == len(layers):
            return Comparison(False, f"expected {spec.describe()} at the end; the model stops after {layers[-1]}", layers[-1].index + 1)
        words = rule.alternatives(spec)
        return Comparison(False, f"expected {words} as layer {position + 1}, before {layers[position]}; add it", layers[position].index)
    if replacements:
        position, spec = replacements[0]
        return Comparison(False, f"expected {rule.alternatives(spec)}{_where(position, len(layers))}; found {layers[position]}", layers[position].index)
    return None


def _two_fixes(rule: Rule, layers: list[Found], pretrained_fix: str) -> Comparison | None:
    """Two layers of the right kinds whose settings are wrong (a hidden layer with softmax and
    an output with relu): name both."""
    specs = rule.specs()
    for first in range(len(layers)):
        for second in range(first + 1, len(layers)):
            for a in (spec for spec in specs if _same_kind(spec, layers[first])):
                for b in (spec for spec in specs if _same_kind(spec, layers[second])):
                    if _Matcher(rule, layers, {first: a, second: b}).full():
                        text = f"{_fix_text(a, layers, first, pretrained_fix)}; and {_fix_text(b, layers, second, pretrained_fix)}"
                        return Comparison(False, text, layers[first].index)
    return None


def _same_kind(spec: LayerSpec, layer: Found) -> bool:
    return spec.kind == layer.kind or layer.kind in FAMILIES.get(spec.kind, ())


def _fix_text(spec: LayerSpec, layers: list[Found], position: int, pretrained_fix: str) -> str:
    layer = layers[position]
    problems = spec.mismatches(layer, pretrained_fix) or [""]
    if spec.units is not None and position == len(layers) - 1:  # the output: its units are the classes
        problems = [p + ", one per class" if p == f": it needs {_units(spec.units)}" else p for p in problems]
    why = problems[0] + "".join(" and " + p.removeprefix(": ") for p in problems[1:])  # every change it needs, at once
    return f"expected {spec.describe()}{_where(position, len(layers))}; found {layer}{why}"


def _first_difference(rule: Rule, layers: list[Found], should: str) -> Comparison:
    """No single change fixes the model: name the first layer from which no match continues."""
    viable = max(p for p in range(len(layers) + 1) if _continues(rule, layers, p))
    if viable >= len(layers):
        return Comparison(False, f"the model stops after {layers[-1]}; it should be {should}", layers[-1].index + 1)
    layer = layers[viable]
    if viable == 0:
        return Comparison(False, f"expected {rule.required()[0] if rule.required() else rule.texts[0]} as layer 1; found {layer}", layer.index)
    found = ", ".join(str(item) for item in layers[viable:])
    return Comparison(False, f"the layers after {layers[viable - 1]} do not follow the rule: found {found}; the model should be {should}", layer.index)


def _continues(rule: Rule, layers: list[Found], position: int) -> bool:
    """Can a model that starts with layers[:position] still match the rule?"""

    class Open(_Matcher):  # every layer from `position` on may become whatever the rule needs
        def accepts(self, layer: int, spec: LayerSpec) -> bool:
            return layer >= position or spec.matches(self.layers[layer])

    trial = layers[:position] + [Found("?")] * (len(rule.specs()) + 1)
    return any(end >= position for end in Open(rule, trial).prefixes()[-1])
