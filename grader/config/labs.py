"""An assignment's own trusted module (`[lab] module`, e.g. `lab.py` in its folder).

The core knows no lab; what a lab adds in code lives in its module, written by the
instructor and run by the grader (never by a student):

- `demo_data(data_format) -> str` and `demo_weights() -> str`: what `"demo"` means in
  the manifest's `[data] pattern` and `[weights] file`;
- `SCENARIOS`: sample submissions for the demo and the tests, by file name:
  `{name: (factory(playground, answer_key, solution_source) -> bytes, description)}`;
- `POPULATION`: answers as students write them, each with a teacher's verdict
  (`grader.config.population.Answer`): `grader calibrate` and the lab's tests grade them;
- checks of its own, registered with `grader.grading.checks.register("name")` when it is
  imported (the manifest then names them like any other).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

from grader.config.manifest import Manifest
from grader.faults import ManifestError


def load(manifest: Manifest) -> types.ModuleType | None:
    """The assignment's module, imported once per process (None if it has none)."""
    if not manifest.lab.module:
        return None
    path = os.path.join(manifest.directory, manifest.lab.module)
    name = f"grader_lab_{manifest.name}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == path:
        return loaded
    if not os.path.isfile(path):
        raise ManifestError(f"{manifest.directory}: [lab] module {manifest.lab.module!r} is not there")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ManifestError(f"the lab module {path} failed to load: {type(error).__name__}: {error}") from None
    return module


def demo(manifest: Manifest, what: str, *args) -> str:
    """What "demo" means for the data (`what` = "demo_data") or the weights ("demo_weights")."""
    module = load(manifest)
    provide = getattr(module, what, None) if module is not None else None
    if provide is None:
        table = "[data] pattern" if what == "demo_data" else "[weights] file"
        raise ManifestError(f"{table} is \"demo\", but the assignment has no [lab] module that provides {what}()",
                            hint=f"point {table} at the lab's files, or add a lab module (see docs/authoring.md)")
    return provide(*args)


def scenarios(manifest: Manifest) -> dict:
    """The lab's sample submissions (file name -> (factory, description))."""
    module = load(manifest)
    return dict(getattr(module, "SCENARIOS", {})) if module is not None else {}


def population(manifest: Manifest) -> list:
    """The lab's population of answers (grader.config.population.Answer), [] if it has none."""
    module = load(manifest)
    return list(getattr(module, "POPULATION", [])) if module is not None else []
