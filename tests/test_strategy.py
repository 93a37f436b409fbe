"""The multi-replica path on two logical CPU devices, and repeatable training."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from reference import strategy
strategy.split_cpu(2)
import keras
from grader import context, manifest
from reference import graph, training, weights
loaded = manifest.load(sys.argv[1])
dataset = context.dataset_for(loaded, None)
placement = strategy.pick("auto")
def build():
    base = weights.pretrained_base(loaded.lab.base, context.weights_for(loaded, None), loaded.image_size)
    base.trainable = False
    model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")])
    return graph.chain(model, graph.base_by_shapes(base.weights))
choices = training.compile_choices({"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]})
run, _ = training.train(build(), choices, dataset, training.Settings(2, 16, 1, loaded.image_size), placement)
print(json.dumps({"replicas": run.replicas, "device": run.device, "placement": run.placement, "epochs": len(run.history["loss"]), "acc": run.val_accuracy}))
"""


def test_mirrored_strategy_on_two_cpu_replicas():
    from conftest import ASSIGNMENT, ROOT

    result = subprocess.run([sys.executable, "-c", SCRIPT, ASSIGNMENT], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2 and facts["device"] == "CPU"
    assert facts["placement"].startswith("MirroredStrategy")
    assert facts["epochs"] == 2 and facts["acc"] > 0.2
