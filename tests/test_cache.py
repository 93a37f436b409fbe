"""The feature cache: when the fast path applies, and the cache folder's behaviour."""

import multiprocessing
import os
import time

import numpy as np
import pytest

from reference import cache, graph


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def small_base(keras, name="mobilenetv2_like"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, x, name=name)


def split(model, base):
    return cache.split(graph.chain(model, graph.base_by_shapes(base.weights)))


def test_frozen_base_then_head_splits_after_the_base(keras):
    base = small_base(keras)
    base.trainable = False
    model = keras.Sequential([keras.Input((8, 8, 3)), base, keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    assert split(model, base) == cache.Split(1, "")


@pytest.mark.parametrize("make, fragment", [
    (lambda k, b: k.Sequential([k.Input((8, 8, 3)), b, k.layers.Flatten(), k.layers.Dense(5)]), "is trainable"),
    (lambda k, b: k.Sequential([k.Input((8, 8, 3)), k.layers.RandomFlip(), b, k.layers.Flatten(), k.layers.Dense(5)]), "random in training"),
    (lambda k, b: k.Sequential([k.Input((8, 8, 3)), k.layers.Flatten(), k.layers.Dense(5)]), "no pretrained base"),
])
def test_no_fast_path_says_why(keras, make, fragment):
    base = small_base(keras)
    if "trainable" not in fragment:
        base.trainable = False
    assert fragment in split(make(keras, base), base).reason


def test_batchnorm_left_trainable_inside_a_frozen_looking_base_falls_back(keras):
    base = small_base(keras)
    for layer in base.layers:
        layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
    model = keras.Sequential([keras.Input((8, 8, 3)), base, keras.layers.Flatten(), keras.layers.Dense(5)])
    assert not split(model, base).fast


def test_key_ignores_the_layer_name_but_not_the_weights(keras):
    a = small_base(keras, "mobilenetv2_a")
    config = a.get_config()
    config["name"] = "mobilenetv2_b"
    b = type(a).from_config(config)  # as the grader rebuilds it: same inner names, new top name
    b.set_weights(a.get_weights())
    weights = a.get_weights()
    assert cache.prefix_key([a], weights, "data", 96) == cache.prefix_key([b], weights, "data", 96)
    assert cache.prefix_key([a], weights, "data", 96) != cache.prefix_key([a], weights, "other data", 96)
    assert cache.prefix_key([a], weights, "data", 96) != cache.prefix_key([a], [w + 1 for w in weights], "data", 96)
    config = a.get_config()
    conv = next(layer for layer in config["layers"] if layer["class_name"] == "Conv2D")
    conv["config"]["strides"] = [2, 2]  # a different prefix with the same weights
    assert cache.prefix_key([a], weights, "data", 96) != cache.prefix_key([type(a).from_config(config)], weights, "data", 96)


def test_key_is_of_what_the_prefix_computes_not_of_its_names_or_how_it_was_frozen(keras):
    """A notebook that made its base twice (a cell run again: input_layer_1), or froze it layer
    by layer, has the same frozen prefix as the solution: one cache, not one per notebook
    (each a hundred seconds to build, and hundreds of MB, at the codelab's scale)."""
    first = small_base(keras)
    first.trainable = False
    again = small_base(keras)  # made after `first`: its input layer is input_layer_N
    for layer in again.layers:
        layer.trainable = False
    assert first.layers[0].name != again.layers[0].name and first.get_config()["trainable"] != again.get_config()["trainable"]
    weights = first.get_weights()
    assert cache.prefix_key([first], weights, "data", 96) == cache.prefix_key([again], weights, "data", 96)
    config = again.get_config()
    conv = next(layer for layer in config["layers"] if layer["class_name"] == "Conv2D")
    conv["config"]["kernel_size"] = [1, 1]  # what it computes changed: another key
    assert cache.prefix_key([first], weights, "data", 96) != cache.prefix_key([type(again).from_config(config)], weights, "data", 96)


def test_the_hash_of_read_only_weights_is_remembered_and_of_writable_ones_never(keras):
    weights = small_base(keras).get_weights()
    first = cache.weights_digest(weights)
    weights[0] += 1  # writable arrays may change in place: hashed again each time
    assert cache.weights_digest(weights) != first
    for weight in weights:
        weight.flags.writeable = False
    kept = cache.weights_digest(weights)
    assert any(known is weights for known, _, _ in cache._DIGESTS)
    assert cache.weights_digest(weights) == kept == cache.weights_digest([w.copy() for w in weights])
    weights[0] = weights[0] + 1  # the list changed: not the digest remembered
    weights[0].flags.writeable = False
    assert cache.weights_digest(weights) != kept


def test_a_layer_with_weights_of_its_own_before_the_base_falls_back(keras):
    base = small_base(keras)
    base.trainable = False
    norm = keras.layers.BatchNormalization(trainable=False)
    model = keras.Sequential([keras.Input((8, 8, 3)), norm, base, keras.layers.Flatten(), keras.layers.Dense(5)])
    assert "has weights of its own" in split(model, base).reason


def test_a_fresh_copy_keeps_the_trainable_flags_and_not_the_weights(keras):
    from reference.training import fresh_copy

    base = small_base(keras)
    base.trainable = False
    base.layers[-1].trainable = True  # a BatchNormalization left trainable inside a frozen base
    copy = fresh_copy(base)
    assert [layer.trainable for layer in copy._flatten_layers()] == [layer.trainable for layer in base._flatten_layers()]
    assert copy.layers[-1].trainable and not copy.trainable
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    dense.set_weights([w + 7 for w in dense.get_weights()])
    fresh = fresh_copy(dense)
    fresh.build((None, 4))
    assert not np.array_equal(fresh.get_weights()[1], dense.get_weights()[1])


def test_store_load_and_least_recently_used_eviction(tmp_path):
    store = cache.FeatureCache(str(tmp_path), max_bytes=2500)
    arrays = {"x": np.zeros(200, np.float32)}  # about 1 KB on disk
    for age, key in ((30, "a"), (20, "b"), (0, "c")):
        store.get_or_build(key, lambda: arrays)
        if age:
            os.utime(store.path(key), (time.time() - age, time.time() - age))
    assert [e["key"] for e in store.entries()] == ["c", "b"]  # "a" was least recently used
    fresh = cache.FeatureCache(str(tmp_path))
    assert np.array_equal(fresh.get_or_build("b", lambda: pytest.fail("should be cached"))["x"], arrays["x"])
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert fresh.clear() == 2 and fresh.entries() == []


def _write(directory, value):
    store = cache.FeatureCache(directory)
    for _ in range(20):
        store._store("same", {"x": np.full(50000, value, np.float32)})


def test_concurrent_writers_of_one_key_leave_a_whole_file(tmp_path):
    workers = [multiprocessing.Process(target=_write, args=(str(tmp_path), v)) for v in (1.0, 2.0)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    x = cache.FeatureCache(str(tmp_path))._load("same")["x"]
    assert x.shape == (50000,) and len(set(x.tolist())) == 1
