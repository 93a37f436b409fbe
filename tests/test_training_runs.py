"""A training run is kept per process: the same layers compiled the same way (their names
aside) give the same run, trained once; anything that changes the numbers trains again."""

import pytest

from reference import training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab():
    from grader import context
    from grader.config import manifest
    from reference.strategy import pick

    from conftest import ROOT

    training.quiet_tensorflow()
    loaded = manifest.load(f"{ROOT}/assignments/keras_flowers_convnet")
    return loaded, context.dataset_for(loaded, None), pick("cpu")


def chain_of(filters: int, prefix: str):
    import keras

    from reference import graph

    L = keras.layers
    model = keras.Sequential([keras.Input((96, 96, 3)), L.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_conv"),
                              L.GlobalAveragePooling2D(name=f"{prefix}_pool"), L.Dense(5, activation="softmax", name=f"{prefix}_out")])
    return graph.chain(model, lambda layer: False)


def test_the_same_model_under_other_names_is_trained_once(lab, monkeypatch):
    loaded, dataset, placement = lab
    choices = training.compile_choices({"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]}, True)
    settings = training.Settings(1, 16, 3, 96)
    first, trained = training.train(chain_of(4, "alice"), choices, dataset, settings, placement)
    fits = []
    monkeypatch.setattr(training, "_compiled", lambda *args: fits.append(args) or pytest.fail("trained again"))
    again, kept = training.train(chain_of(4, "bob"), choices, dataset, settings, placement)
    assert again is first and kept is trained and fits == []
    monkeypatch.undo()
    other, _ = training.train(chain_of(6, "bob"), choices, dataset, settings, placement)  # other filters: trained
    assert other is not first
    reseeded, _ = training.train(chain_of(4, "bob"), choices, dataset, training.Settings(1, 16, 4, 96), placement)  # another seed
    assert reseeded is not first
