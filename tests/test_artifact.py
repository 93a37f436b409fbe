"""Rebuilding a submitted model from its config: a config seen before is not rebuilt,
and nothing of the submission before can remain in it."""

import hashlib

import numpy as np
import pytest

from grader import artifact


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def saved(keras, tmp_path, name, offset):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head")])
    model.set_weights([np.full(w.shape, offset, w.dtype) for w in model.get_weights()])
    path = str(tmp_path / f"{name}.weights.h5")
    model.save_weights(path)
    return model.to_json(), path


def test_the_same_config_is_rebuilt_once_and_holds_each_submissions_own_weights(keras, tmp_path):
    config, first = saved(keras, tmp_path, "first", 1.0)
    _, second = saved(keras, tmp_path, "second", 2.0)
    a = artifact.rebuild(config, first)
    assert all(np.all(w == 1.0) for w in a.get_weights())
    b = artifact.rebuild(config, second)
    assert b is a  # taken from the rebuilt models, not built again
    assert all(np.all(w == 2.0) for w in b.get_weights())


def test_weights_that_fail_to_load_leave_nothing_behind(keras, tmp_path):
    config, good = saved(keras, tmp_path, "good", 5.0)
    artifact.rebuild(config, good)
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(artifact.Refused):
        artifact.rebuild(config, str(broken))
    model = artifact.REBUILT.take(hashlib.sha256(config.encode()).hexdigest())  # as the next submission would
    assert all(np.all(w == 0) for w in model.get_weights())  # the last good submission's weights are gone


def test_a_model_with_weights_but_no_weights_file_is_refused(keras, tmp_path):
    config, path = saved(keras, tmp_path, "some", 3.0)
    artifact.rebuild(config, path)
    with pytest.raises(artifact.Refused, match="saved no weights"):
        artifact.rebuild(config, None)
