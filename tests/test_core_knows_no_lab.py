"""The core (grader/, reference/) knows no lab: its classes, its base model, its data,
the names its notebooks define and the environment its cells read come from the
assignments' manifests, notebooks and modules."""

import ast
import glob
import os
import re

from grader.config import manifest as manifest_mod, release
from conftest import ROOT

# What the series' manifests do not spell out: where its data and its base's weights come from.
SERIES_WORDS = {"flowers", "imagenet"}


def lab_words() -> set[str]:
    """Words of the labs, matched whatever their case."""
    words = set(SERIES_WORDS)
    for path in glob.glob(os.path.join(ROOT, "assignments", "*", "assignment.toml")):
        lab = manifest_mod.load(os.path.dirname(path)).lab
        words |= set(lab.classes) | {key for key, _ in lab.environment}
        if lab.base is not None:
            words.add(lab.base.application)
    return words


def lab_names() -> set[str]:
    """The constants the labs' notebooks define (IMAGE_SIZE, ...), matched as written and
    not as a library's attribute: the core's own image_size is not the lab's IMAGE_SIZE,
    and tf.data.AUTOTUNE is TensorFlow's."""
    names = set()
    for path in glob.glob(os.path.join(ROOT, "assignments", "*", "assignment.toml")):
        built, _ = release.build(manifest_mod.load(os.path.dirname(path)))
        for cell in built.cells:
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            names |= {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                      if isinstance(target, ast.Name) and target.id.isupper()}
    return names


def test_no_lab_word_in_the_core():
    words, names = lab_words(), lab_names()
    assert {"daisy", "MobileNetV2", "flowers", "imagenet"} <= words  # the transfer lab's, at least
    assert "IMAGE_SIZE" in names
    found = []
    for folder in ("grader", "reference"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if os.path.isfile(path) and path.endswith((".py", ".j2", ".js")):
                text = open(path, encoding="utf-8").read()
                found += [f"{os.path.relpath(path, ROOT)}: {word}" for word in words if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)]
                found += [f"{os.path.relpath(path, ROOT)}: {name}" for name in names if re.search(rf"(?<!\.)\b{re.escape(name)}\b", text)]
    assert found == []
