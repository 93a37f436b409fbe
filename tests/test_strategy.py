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


CONVNET_SCRIPT = r"""
import json, sys
from reference import strategy
strategy.split_cpu(2)
import keras
from grader import context, manifest
from reference import graph, training
loaded = manifest.load(sys.argv[1])
assert loaded.lab.base is None and loaded.labels == "one_hot"
dataset = context.dataset_for(loaded, None)
placement = strategy.pick(loaded.strategy)
L = keras.layers
# the grader rebuilds the model from its config, in the placement's scope
model = keras.Sequential([keras.Input((loaded.image_size, loaded.image_size, 3)),
                          L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                          L.Conv2D(16, 3, padding="same", activation="relu"),
                          L.GlobalAveragePooling2D(), L.Dense(5, activation="softmax")])
chain = graph.chain(model, lambda layer: False)
choices = training.compile_choices({"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]}, one_hot_labels=True)
run, _ = training.train(chain, choices, dataset, training.Settings(2, loaded.batch_size, 1, loaded.image_size), placement)
print(json.dumps({"replicas": run.replicas, "placement": run.placement, "path": run.path, "epochs": len(run.history["loss"]),
                  "acc": run.val_accuracy}))
"""


def test_the_convnet_lab_trains_from_scratch_on_two_cpu_replicas():
    """The convnet lab (no base, one-hot labels): the whole model trained in full, mirrored on two replicas."""
    from conftest import ROOT

    assignment = os.path.join(ROOT, "assignments", "keras_flowers_convnet")
    result = subprocess.run([sys.executable, "-c", CONVNET_SCRIPT, assignment], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2 and facts["placement"] == "MirroredStrategy on 2 CPU replica(s)"
    assert facts["path"].startswith("full training") and facts["epochs"] == 2
    assert facts["acc"] > 0.2  # above chance for five classes after two epochs (the run is seeded)
