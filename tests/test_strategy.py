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
from grader import context
from grader.config import manifest
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
from grader import context
from grader.config import manifest
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


SETTLE_SCRIPT = r"""
import json
import numpy as np
from reference import strategy
strategy.split_cpu(2)
import keras
from reference import training
rng = np.random.default_rng(0)
batches = [(rng.normal(3.0, 2.0, (8, 6, 6, 2)).astype("float32"), np.zeros(8)) for _ in range(3)]
with strategy.pick("auto").strategy.scope():
    conv = keras.layers.Conv2D(4, 3)
    trained = keras.layers.BatchNormalization()
    frozen = keras.layers.BatchNormalization()
    frozen.trainable = False
    model = keras.Sequential([keras.Input((6, 6, 2)), conv, trained, frozen, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
before = [np.array(w) for w in model.trainable_weights]
settled = training._settle_batch_norm(model, batches)
outputs = [np.asarray(conv(x)) for x, _ in batches]
print(json.dumps({
    "settled": settled,
    "mean_error": float(np.abs(np.asarray(trained.moving_mean) - np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0)).max()),
    "variance_error": float(np.abs(np.asarray(trained.moving_variance) - np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0)).max()),
    "momentum": trained.momentum,
    "frozen": [float(v) for v in np.concatenate([np.asarray(frozen.moving_mean), np.asarray(frozen.moving_variance)])],
    "weights_kept": all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.trainable_weights)),
    "none_to_settle": training._settle_batch_norm(keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3)]), batches),
}))
"""


def test_batch_norm_statistics_are_the_plain_average_of_the_training_batches_on_two_replicas():
    """The grader's short run lets a trained batch normalisation's statistics settle: each
    one ends as the plain average of the batches' statistics (not a running average
    remembering mean 0, variance 1); a frozen one, and every weight, stay as they were."""
    from conftest import ROOT

    result = subprocess.run([sys.executable, "-c", SETTLE_SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["settled"] is True and facts["none_to_settle"] is False
    assert facts["mean_error"] < 1e-4 and facts["variance_error"] < 1e-3
    assert facts["momentum"] == 0.99  # the layer's own, restored
    assert facts["frozen"] == [0.0] * 4 + [1.0] * 4
    assert facts["weights_kept"]
