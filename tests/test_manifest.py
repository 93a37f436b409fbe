import tomllib

import pytest

from grader import manifest as manifest_mod
from grader.errors import ManifestError
from conftest import ASSIGNMENT


def raw():
    with open(f"{ASSIGNMENT}/assignment.toml", "rb") as handle:
        return tomllib.load(handle)


def test_the_lab_manifest_parses(manifest):
    assert manifest.answer_cells == ("model",)
    assert manifest.image_size == 96 and manifest.strategy == "auto"
    assert [c.check for c in manifest.checks] == ["answer_cells_run", "model_structure", "frozen_base", "compile_settings", "validation_accuracy"]
    assert sum(c.points for c in manifest.checks) == 100


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: r["training"].update(strategy="quantum"), "is not one of auto, tpu, gpu, cpu"),
    (lambda r: r["training"].update(epochs="ten"), "[training] epochs: must be int"),
    (lambda r: r["data"].update(image_size=0), "must be positive"),
    (lambda r: r.pop("data"), "[data]: missing table"),
    (lambda r: r["assignment"].update(answer_cells=[]), "non-empty list"),
    (lambda r: r["checks"].append(dict(r["checks"][0])), "unique"),
])
def test_bad_manifests_say_where(edit, fragment):
    data = raw()
    edit(data)
    with pytest.raises(ManifestError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        manifest_mod.parse(data, directory=ASSIGNMENT)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="has no assignment.toml"):
        manifest_mod.load(str(tmp_path))
