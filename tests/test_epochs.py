"""The fast path's epochs, each one compiled call on batches sliced in the graph, train
exactly as Keras' `fit` does on the same batches: the same history and the same weights,
bit for bit, whatever the head (a random layer, a batch normalisation, one-hot labels)."""

import numpy as np
import pytest

from reference import training

BATCH = 8


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    training.quiet_tensorflow()
    return tf


def _head(keras, kind: str):
    layers = {
        "dense": [keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")],
        "dropout": [keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(5, activation="softmax")],
        "batch_norm": [keras.layers.GlobalAveragePooling2D(), keras.layers.BatchNormalization(), keras.layers.Dense(5)],
    }[kind]
    return keras.Sequential([keras.Input((3, 3, 16)), *layers])


def _trained(tf, kind: str, one_hot: bool, in_graph: bool):
    import keras

    keras.utils.set_random_seed(7)
    model = _head(keras, kind)
    loss = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
    if kind == "batch_norm":  # logits
        loss = keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, metrics=["accuracy"], steps_per_execution=3)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(3)
    tensors = {"train": tf.constant(rng.normal(size=(61, 3, 3, 16)).astype("float32")),  # 7 whole batches and 5 left out
               "train_labels": tf.constant(rng.integers(0, 5, 61)),
               "validation": tf.constant(rng.normal(size=(19, 3, 3, 16)).astype("float32")),  # a last batch of 3
               "validation_labels": tf.constant(rng.integers(0, 5, 19))}
    choices = training.CompileChoices({"class_name": "Adam", "config": {}}, loss if isinstance(loss, str) else type(loss).__name__,
                                      one_hot, kind == "batch_norm", ("accuracy",))
    if in_graph:
        epochs = training._Epochs(model, BATCH)
        assert epochs.can_train(tensors["train"], tensors["validation"])
        history = epochs.fit(*training._features_and_labels(tensors, choices, 5), 4)
    else:
        batches = training._feature_batches(tensors, choices, BATCH, 5)
        fitted = model.fit(batches("train", True), validation_data=batches("validation", False), epochs=4, verbose=0)
        history = {name: [float(v) for v in values] for name, values in fitted.history.items()}
    return history, [np.asarray(w) for w in model.weights]


@pytest.mark.parametrize("kind, one_hot", [("dense", False), ("dropout", True), ("batch_norm", False), ("batch_norm", True)])
def test_epochs_in_the_graph_are_fit_bit_for_bit(tf, kind, one_hot):
    expected_history, expected_weights = _trained(tf, kind, one_hot, in_graph=False)
    history, weights = _trained(tf, kind, one_hot, in_graph=True)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"} == set(expected_history)
    assert history == expected_history
    assert len(weights) == len(expected_weights) and all(np.array_equal(a, b) for a, b in zip(weights, expected_weights))
    assert len(history["loss"]) == 4 and len(set(history["loss"])) > 1  # it trained, epoch after epoch


def test_too_few_images_for_one_batch_is_left_to_fit(tf):
    import keras

    epochs = training._Epochs(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), BATCH)
    assert not epochs.can_train(tf.zeros((BATCH - 1, 2)), tf.zeros((4, 2)))
    assert not epochs.can_train(tf.zeros((BATCH, 2)), tf.zeros((0, 2)))


def test_kept_heads_are_bounded_by_count_and_by_their_numbers():
    kept = training._Kept(3, max_values=2 * 100)
    for key in "abcd":
        kept.keep(key, (None, [(None, np.zeros(10))], None))
    assert list(kept.items) == ["b", "c", "d"]  # the least recently kept first out
    kept.keep("big", (None, [(None, np.zeros(90))], None))  # 2 * (90 + 10) = 200: room for one small one beside it
    assert list(kept.items) == ["d", "big"]
    kept.keep("huge", (None, [(None, np.zeros(500))], None))
    assert list(kept.items) == ["huge"]  # the last one is kept, however large
    assert kept.take("huge") is not None and kept.take("huge") is None and kept.hits == 1


def test_training_is_settled_after_epochs_in_a_row_at_or_above_the_mark():
    from reference.training import SETTLED_EPOCHS, settled

    assert SETTLED_EPOCHS == 2
    assert not settled({"val_accuracy": [0.9, 0.9]}, None)  # no mark: every epoch is trained
    assert not settled({"val_accuracy": [0.7]}, 0.65)  # one epoch is not yet a trend
    assert not settled({"val_accuracy": [0.7, 0.6, 0.7]}, 0.65)
    assert settled({"val_accuracy": [0.2, 0.65, 0.7]}, 0.65)
    assert settled({"loss": [1.0, 0.5], "val_categorical_accuracy": [0.7, 0.8]}, 0.65)
    assert not settled({"loss": [1.0, 0.5], "val_loss": [1.0, 0.9]}, 0.65)  # no accuracy metric: nothing to judge by
