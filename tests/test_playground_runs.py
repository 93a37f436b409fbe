"""The released playground really runs, with nbclient, on the demo data, up to the model cell."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from grader import context
from reference import weights

pytestmark = pytest.mark.slow


def test_every_cell_before_the_model_cell_runs(manifest, released, tmp_path, monkeypatch):
    _, playground = released
    dataset = context.dataset_for(manifest, None)
    keras_home = tmp_path / "keras"
    weights.stage(context.weights_for(manifest, None), str(keras_home), manifest.lab.base, manifest.image_size)
    monkeypatch.setenv("FLOWERS_TFREC", os.path.join(os.path.dirname(dataset.files[0]), "*.tfrec"))
    monkeypatch.setenv("FLOWERS_IMAGE_SIZE", str(manifest.image_size))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ids = [c.get("id") for c in playground.cells]
    before = nbformat.from_dict({**playground, "cells": playground.cells[: ids.index("model")]})
    NotebookClient(before, timeout=120, kernel_name="python3").execute()
    outputs = "".join(o.get("text", "") for c in before.cells if c.cell_type == "code" for o in c.outputs)
    assert "16 data files: 13 to train on, 3 to validate on" in outputs
    assert not any(o.get("output_type") == "error" for c in before.cells if c.cell_type == "code" for o in c.outputs)
