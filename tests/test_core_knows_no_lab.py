"""The core (grader/, reference/) knows no lab: its classes, its base model and the
environment its cells read come from the assignments' manifests and modules."""

import glob
import os
import re

from grader import manifest as manifest_mod
from conftest import ROOT


def lab_words() -> set[str]:
    words = set()
    for path in glob.glob(os.path.join(ROOT, "assignments", "*", "assignment.toml")):
        lab = manifest_mod.load(os.path.dirname(path)).lab
        words |= set(lab.classes) | {key for key, _ in lab.environment}
        if lab.base is not None:
            words.add(lab.base.application)
    return words


def test_no_lab_word_in_the_core():
    words = lab_words()
    assert {"daisy", "MobileNetV2"} <= words  # the transfer lab's, at least
    found = []
    for folder in ("grader", "reference"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if os.path.isfile(path) and path.endswith((".py", ".j2", ".js")):
                text = open(path, encoding="utf-8").read()
                found += [f"{os.path.relpath(path, ROOT)}: {word}" for word in words if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)]
    assert found == []
