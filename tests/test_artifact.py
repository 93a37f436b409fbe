"""Rebuilding a submitted model from its config: a config seen before is not rebuilt,
and nothing of the submission before can remain in it."""

import hashlib
import os

import numpy as np
import pytest

from grader.grading import artifact


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
    import h5py

    config, good = saved(keras, tmp_path, "good", 5.0)
    artifact.rebuild(config, good)
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(artifact.Refused):
        artifact.rebuild(config, str(broken))
    _, half = saved(keras, tmp_path, "half", 6.0)
    with h5py.File(half, "a") as handle:
        del handle["layers/dense/vars/1"]  # the bias gone: load_weights stops after the kernel, or before it
    with pytest.raises(artifact.Refused, match="do not fit its layers"):
        artifact.rebuild(config, half)
    model, _ = artifact.REBUILT.take(hashlib.sha256(config.encode()).hexdigest())  # as the next submission would
    assert not any(np.any(w == 5.0) for w in model.get_weights())  # the last good submission's weights are gone


def test_a_model_with_weights_but_no_weights_file_is_refused(keras, tmp_path):
    config, path = saved(keras, tmp_path, "some", 3.0)
    artifact.rebuild(config, path)
    with pytest.raises(artifact.Refused, match="saved no weights"):
        artifact.rebuild(config, None)


def test_tensorflow_activation_functions_are_read_as_keras_activations(keras, tmp_path):
    import json

    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=tf.nn.relu), keras.layers.Dense(2, activation=tf.nn.softmax)])
    path = str(tmp_path / "tf.weights.h5")
    model.save_weights(path)
    assert "softmax_v2" in model.to_json()  # how Keras saves tf.nn.softmax
    rebuilt = artifact.rebuild(model.to_json(), path)
    assert [layer.activation.__name__ for layer in rebuilt.layers] == ["relu", "softmax"]
    assert json.loads(model.to_json())  # unchanged


@pytest.mark.parametrize("hidden, fragment", [
    ({"module": "keras.layers", "class_name": "Lambda", "config": {}, "registered_name": None}, "uses Lambda"),
    ({"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}, "the function 'exec'"),
    ({"module": "my_package", "class_name": "Dense", "config": {}, "registered_name": None}, "Dense from my_package"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {}, "registered_name": "Custom>Dense"}, "registered as Custom>Dense"),
])
def test_anything_outside_the_allow_list_is_refused_wherever_it_hides(keras, tmp_path, hidden, fragment):
    import json

    config, path = saved(keras, tmp_path, "hide", 1.0)
    data = json.loads(config)
    data["config"]["layers"][-1]["config"]["activation"] = hidden
    with pytest.raises(artifact.Refused, match=fragment):
        artifact.rebuild(json.dumps(data), path)
    with pytest.raises(artifact.Refused, match=fragment):
        artifact.vetted({"optimizer": {"class_name": "Adam", "config": {"learning_rate": hidden}}}, "compile settings")


def test_a_config_nested_too_deeply_is_refused():
    deep: dict = {}
    for _ in range(artifact.MAX_DEPTH + 5):
        deep = {"config": deep}
    with pytest.raises(artifact.Refused, match="nested more than"):
        artifact.vetted(deep, "model")


def test_a_weights_file_that_declares_more_than_the_model_has_is_refused_before_it_is_read(keras, tmp_path):
    import h5py

    config, path = saved(keras, tmp_path, "bomb", 1.0)
    with h5py.File(path, "a") as handle:
        handle.create_dataset("layers/head/vars/2", shape=(2**28,), dtype="float32", fillvalue=1.0)  # 1 GiB declared, a few bytes stored
    assert os.path.getsize(path) < 2**20
    with pytest.raises(artifact.Refused, match="none of the model's variables"):
        artifact.rebuild(config, path)


def _bombed(keras, tmp_path, name, make):
    """The nested-base model's config and its weights file, made hostile by `make(src, dst)` (tests/attacks/bombs.py)."""
    model = _with_nested_base(keras, 3)
    plain = str(tmp_path / f"{name}-plain.weights.h5")
    model.save_weights(plain)
    path = str(tmp_path / f"{name}.weights.h5")
    make(plain, path)
    return model.to_json(), path


@pytest.mark.parametrize("name, fragment", [
    ("chunks", r"in chunks of 268,435,\d+ bytes, more than the array itself holds"),
    ("deflated_twice", "compressed more than once"),
    ("maze", "a second time through another link"),
    ("loop", "reaches 'loop/again' a second time"),
    ("tiny_chunks", r"in [\d,]+ chunks \(reading each is a step of its own\)"),
])
def test_weights_files_that_unpack_or_lead_round_are_refused_before_a_byte_is_read(keras, tmp_path, name, fragment, monkeypatch):
    """Every array one chunk of 256 MiB deflated twice (the file: a few kilobytes), groups
    linked twice to the next (2**24 paths), a group linked into itself: each is refused on
    its first offending link or array, by a walk that reaches every object once."""
    import resource

    from attacks import bombs

    make = {
        "chunks": lambda src, dst: bombs.chunk_bomb(src, dst, 2**28, 1),
        "deflated_twice": lambda src, dst: bombs.chunk_bomb(src, dst, 2**12, 2),
        "maze": lambda src, dst: bombs.link_maze(src, dst, 24),
        "loop": bombs.self_linked,
        "tiny_chunks": _one_number_a_chunk,
    }[name]
    monkeypatch.setattr(artifact, "MAX_CHUNKS", 64)  # this model's largest array holds 320 numbers
    config, path = _bombed(keras, tmp_path, name, make)
    assert os.path.getsize(path) < 8 * 2**20  # what it would unpack to: 256 MiB an array
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(artifact.Refused, match=fragment):
        artifact.rebuild(config, path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: nothing was unpacked


def _one_number_a_chunk(src, dst):
    """The honest file with its largest array stored one number a chunk."""
    import shutil

    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as handle:
        arrays = []
        handle.visititems(lambda name, item: arrays.append(name) if isinstance(item, h5py.Dataset) else None)
        largest = max(arrays, key=lambda name: handle[name].size)
        data = handle[largest][()]
        del handle[largest]
        handle.create_dataset(largest, data=data, chunks=(1,) * data.ndim)


def test_the_links_and_bytes_of_a_weights_file_have_a_budget(keras, tmp_path):
    model = _with_nested_base(keras, 4)
    path = str(tmp_path / "plain.weights.h5")
    model.save_weights(path)
    examined = artifact._examine(path, artifact._from_config(model.to_json()), artifact.Budget())
    links = len(examined.groups) + len(examined.arrays) + 2  # the optimizer's group and its vars
    assert artifact.rebuild(model.to_json(), path, budget=artifact.Budget(links=links))
    with pytest.raises(artifact.Refused, match=f"more than {links - 1:,} links.*max_links"):
        artifact.rebuild(model.to_json(), path, budget=artifact.Budget(links=links - 1))
    with pytest.raises(artifact.Refused, match=r"more than the 0 MiB|\[grader\] read_mb"):
        artifact.rebuild(model.to_json(), path, budget=artifact.Budget(read_mb=1e-6))


def test_a_model_that_computes_too_much_per_image_is_refused_before_its_memory_is_taken(keras, tmp_path):
    """Resizing up in front of the base: few parameters more, many more FLOPs and activations per image."""
    config, path = _with_resizing(keras, tmp_path, 8)
    small = artifact.rebuild(config, path)
    from grader.grading import budget

    cost = budget.model_cost(small)
    big_config, big_path = _with_resizing(keras, tmp_path, 64)
    big = budget.model_cost(artifact.rebuild(big_config, big_path))
    assert big.flops > 10 * cost.flops and big.activations > 10 * cost.activations
    with pytest.raises(artifact.Refused, match="GFLOPs per image, more than .*max_gflops"):
        artifact.rebuild(big_config, big_path, budget=artifact.Budget(gflops=10 * cost.gflops))
    with pytest.raises(artifact.Refused, match="values per image, more than"):
        artifact.rebuild(big_config, big_path, budget=artifact.Budget(activations=10 * cost.activations))


def _with_resizing(keras, tmp_path, size):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    base = keras.Model(inputs, keras.layers.Conv2D(16, 3, name="conv2")(x), name="base")
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Resizing(size, size), base,
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")])
    path = str(tmp_path / f"resized{size}.weights.h5")
    model.save_weights(path)
    return model.to_json(), path


def test_a_model_over_the_parameter_budget_is_refused(keras, tmp_path):
    config, path = saved(keras, tmp_path, "big", 1.0)  # 4 * 3 + 3 = 15 parameters
    assert artifact.rebuild(config, path, max_parameters=15)
    with pytest.raises(artifact.Refused, match="has 15 parameters, more than the 14"):
        artifact.rebuild(config, path, max_parameters=14)


HUGE_HEAD = """
import json, resource, sys
import keras
from grader.grading import artifact

with keras.StatelessScope(initialize_variables=False):  # the config alone, without its memory
    model = keras.Sequential([keras.Input((3, 3, 1280)), keras.layers.Flatten(), keras.layers.Dense(16384), keras.layers.Dense(5)])
    config = model.to_json()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    artifact.rebuild(config, None, max_parameters=10_000_000)
except artifact.Refused as refused:
    print(json.dumps({"refused": str(refused), "grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


def test_a_huge_layer_is_refused_before_its_memory_is_taken():
    import json
    import subprocess
    import sys

    # 188 million parameters: 755 MB of float32 had the layers been built for real
    done = subprocess.run([sys.executable, "-c", HUGE_HEAD], capture_output=True, text=True, timeout=300)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert "has 188,841,989 parameters" in facts["refused"]
    assert facts["grew_kb"] < 100 * 1024, facts


def test_a_model_within_the_budget_has_its_variables_made(keras, tmp_path):
    config, path = saved(keras, tmp_path, "made", 1.0)
    model = artifact.rebuild(config, path, max_parameters=15)
    assert all(np.all(w.numpy() == 1.0) for w in model.weights)
    assert model.predict(np.ones((1, 4), "float32"), verbose=0).shape[0] == 1


def _with_nested_base(keras, seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    base = keras.Model(inputs, x, name="base")
    base.trainable = False
    model = keras.Sequential([keras.Input((8, 8, 3)), base, keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    for variable in model.weights:  # moving statistics too, none of them zeros or ones
        variable.assign(np.random.default_rng(seed).normal(size=tuple(variable.shape)).astype("float32"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # as a student's trained model: its file holds the optimizer's state too
    return model


def test_weights_read_straight_from_the_file_are_what_load_weights_loads(keras, tmp_path):
    """The file is read without Keras' walk through every layer, in the places Keras'
    own saver gives each variable; checked against load_weights itself."""
    model = _with_nested_base(keras, 1)
    path = str(tmp_path / "nested.weights.h5")
    model.save_weights(path)
    rebuilt = artifact.rebuild(model.to_json(), path)
    layout = artifact._dataset_names(rebuilt)
    assert any(name.startswith("optimizer/") for name, _, _ in artifact._examine(path, rebuilt, artifact.Budget()).arrays)
    assert layout is not None and len(layout[0]) == len(rebuilt.weights)  # the straight read applies
    assert artifact._read_as_keras_would(path, rebuilt, layout) is not None
    loaded = keras.models.model_from_json(model.to_json())
    loaded.load_weights(path)
    rebuilt = artifact.rebuild(model.to_json(), path)  # taken from the rebuilt models, its names known
    assert [w.path for w in rebuilt.weights] == [w.path for w in loaded.weights]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(rebuilt.weights, loaded.weights))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(rebuilt.weights, model.weights))


def _straight_read(path: str, config: str):
    rebuilt = artifact._from_config(config)
    layout = artifact._dataset_names(rebuilt)
    return artifact._read_as_keras_would(path, rebuilt, layout)


def _edited(keras, tmp_path, name: str, edit):
    import h5py

    model = _with_nested_base(keras, 2)
    path = str(tmp_path / f"{name}.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "a") as handle:
        edit(handle)
    return model, path


@pytest.mark.parametrize("name, edit", [
    ("missing", lambda handle: handle.__delitem__("layers/dense/vars/1")),
    # the same array under a second name: one object, so one dataset for visititems, but one more for load_weights
    ("linked_twice", lambda handle: handle.__setitem__("layers/dense/vars/2", handle["layers/dense/vars/1"])),
    ("soft_link", lambda handle: (handle.__delitem__("layers/dense/vars/1"),
                                  handle.__setitem__("layers/dense/vars/1", __import__("h5py").SoftLink("/layers/dense/vars/0")))),
    ("empty_group", lambda handle: handle.create_group("layers/dense/vars/extra")),
])
def test_a_file_not_laid_out_as_keras_saves_this_model_is_left_to_load_weights(keras, tmp_path, name, edit):
    model, path = _edited(keras, tmp_path, name, edit)
    assert _straight_read(path, model.to_json()) is None
    with pytest.raises(artifact.Refused):
        artifact.rebuild(model.to_json(), path)


def test_an_array_stored_outside_the_file_is_never_read(keras, tmp_path):
    """An external or virtual dataset would pull its bytes from another file on the
    grader's host (a neighbour's weights, a device that blocks): Keras refuses them, and
    the straight read leaves such a file to it."""
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(5, 7.0, "float32").tobytes())
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as handle:
        handle["values"] = np.full(5, 8.0, "float32")

    def external(handle):
        del handle["layers/dense/vars/1"]
        handle.create_dataset("layers/dense/vars/1", shape=(5,), dtype="float32", external=[(str(secret), 0, 20)])

    def virtual(handle):
        del handle["layers/dense/vars/1"]
        source = h5py.VirtualSource(other, "values", shape=(5,))
        layout = h5py.VirtualLayout(shape=(5,), dtype="float32")
        layout[:] = source
        handle.create_virtual_dataset("layers/dense/vars/1", layout)

    for name, edit in (("external", external), ("virtual", virtual)):
        model, path = _edited(keras, tmp_path, name, edit)
        assert _straight_read(path, model.to_json()) is None, name
        with pytest.raises(artifact.Refused, match="Not allowed"):
            artifact.rebuild(model.to_json(), path)


def test_an_array_keras_marks_as_bfloat16_is_left_to_load_weights(keras, tmp_path):
    model, path = _edited(keras, tmp_path, "bfloat16", lambda handle: handle["layers/dense/vars/0"].attrs.__setitem__("dtype", "bfloat16"))
    assert _straight_read(path, model.to_json()) is None
    loaded = keras.models.model_from_json(model.to_json())
    try:
        loaded.load_weights(path)  # read as bfloat16 on the way in, or refused where that conversion is missing
    except ValueError:
        with pytest.raises(artifact.Refused, match="do not fit its layers"):
            artifact.rebuild(model.to_json(), path)
        return
    rebuilt = artifact.rebuild(model.to_json(), path)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(rebuilt.weights, loaded.weights))


def test_whether_a_model_takes_the_lab_images_is_asked_once_per_config_size_and_classes(keras, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from grader.grading import evidence

    def asked(model, size: int, classes: int) -> str:
        path = str(tmp_path / f"{model.name}.weights.h5")
        model.save_weights(path)
        found = artifact.Artifact(log=(), export={"found": True}, model_json=model.to_json(), compile_config=None, weights_path=path)
        lab = SimpleNamespace(hint=lambda name, default: default)
        setting = SimpleNamespace(image_size=size, dataset=SimpleNamespace(classes=["c"] * classes), max_parameters=0, lab=lab,
                                  work_budget=artifact.Budget)
        return evidence.Evidence(setting, SimpleNamespace(student_cells=[]), None, found, {})._applies

    flat = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(5)], name="flat")
    unflattened = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(5)], name="unflattened")
    calls = []
    judged = evidence._output_problem
    monkeypatch.setattr(evidence, "_output_problem", lambda *args: calls.append(args) or judged(*args))
    assert asked(flat, 8, 5) == "" and asked(flat, 8, 5) == ""
    assert "5 outputs per image, fewer than the lab has 6 classes" in asked(flat, 8, 6)
    assert "5 outputs per image, but the lab has 4 classes" in asked(flat, 8, 4)  # more is the student's too
    assert "not one score per class" in asked(unflattened, 8, 5) == asked(unflattened, 8, 5)
    assert [call[:2] for call in calls] == [((5,), 5), ((5,), 6), ((5,), 4), ((8, 8, 5), 5)]  # each config, size and classes once
    kept = dict(evidence._APPLIES)
    assert "cannot take the lab's 9x9x3 images" in asked(flat, 9, 5) == asked(flat, 9, 5)
    assert evidence._APPLIES == kept  # a call that raised is not kept: it may have been a passing failure


def test_rebuilt_models_are_bounded_by_count_and_by_their_parameters(keras):
    kept = artifact._Rebuilt(size=3, max_parameters=39)
    dense = lambda units: keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])  # 5 parameters a unit
    for key in "abcd":
        kept.keep(key, dense(1), None)
    assert list(kept.models) == ["b", "c", "d"]
    assert kept.take("b") is not None and list(kept.models) == ["c", "d", "b"]  # used: last out
    kept.keep("big", dense(6), None)  # 30 parameters: one 5-parameter model fits beside it, not two
    assert list(kept.models) == ["b", "big"]
    kept.keep("huge", dense(100), None)
    assert list(kept.models) == ["huge"]
