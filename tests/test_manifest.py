import tomllib

import pytest

from grader.config import manifest as manifest_mod
from grader.faults import ManifestError
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


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: r["sandbox"].update(memory=4096), "[sandbox] memory: unknown key\n  did you mean 'memory_mb'?"),
    (lambda r: r["training"].update(epoch=3), "did you mean 'epochs'?"),
    (lambda r: r.update(sandbx={}), "[sandbx]: unknown table\n  did you mean 'sandbox'?"),
    (lambda r: r["sandbox"].update(cell_timeout=0), "[sandbox] cell_timeout: must be positive"),
    (lambda r: r["sandbox"].update(memory_mb=-5), "[sandbox] memory_mb: must be positive"),
    (lambda r: r["grader"].update(attempts=0) if "grader" in r else r.update(grader={"attempts": 0}), "[grader] attempts: must be positive"),
    (lambda r: r["training"].update(labels="onehot"), "is not one of class_index, one_hot"),
    (lambda r: r["checks"][0].update(points=-1), "points: must be 0 or more"),
])
def test_typos_and_bad_limits_are_errors_that_name_the_fix(edit, fragment):
    data = raw()
    edit(data)
    with pytest.raises(ManifestError) as error:
        manifest_mod.parse(data, directory=ASSIGNMENT)
    assert fragment in str(error.value)


def test_the_reference_document_is_generated_from_the_declarations():
    import os

    path = os.path.join(os.path.dirname(ASSIGNMENT), "..", "docs", "manifest.md")
    with open(path) as handle:
        assert handle.read() == manifest_mod.reference(), "regenerate it: python -m grader.config.manifest > docs/manifest.md"
