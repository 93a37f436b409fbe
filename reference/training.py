"""The trusted training run: the student's model and compile choices, the assignment's
epochs, batch size and seed, on data the student's code never touched.

Labels are fed sparse or one-hot to match the student's loss, as the lab's part 2
(sparse) and part 3 (one-hot) both do.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import os
import time

import numpy as np

from reference import data as data_mod
from reference import initial
from reference.strategy import Placement

CROSS_ENTROPIES = {
    # loss name (string or class) -> whether it wants one-hot labels
    "sparse_categorical_crossentropy": False,
    "SparseCategoricalCrossentropy": False,
    "categorical_crossentropy": True,
    "CategoricalCrossentropy": True,
}
MISCLASSIFIED_SHOWN = 6
STEPS_PER_CALL = 16
OPTIMIZERS = frozenset("Adam AdamW SGD RMSprop Adagrad Adadelta Adamax Nadam Ftrl Lion Lamb".split())


class CompileProblem(Exception):
    """The student's compile choices cannot drive training; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class CompileChoices:
    optimizer: dict  # Keras-serialized optimizer
    loss: str  # the name as the student wrote it
    one_hot: bool
    from_logits: bool
    metrics: tuple[str, ...]

    @property
    def learning_rate(self):
        return self.optimizer.get("config", {}).get("learning_rate")


def compile_choices(config: dict | None, one_hot_labels: bool = False) -> CompileChoices:
    """Read the student's compile config (from `model.get_compile_config()`), as data;
    `one_hot_labels`: the lab's labels are one-hot (the loss the fixes name)."""
    fitting = "categorical_crossentropy" if one_hot_labels else "sparse_categorical_crossentropy"
    if not config:
        raise CompileProblem("the model is not compiled: call model.compile(optimizer='adam', loss=..., metrics=['accuracy'])")
    weights = config.get("loss_weights")
    if isinstance(weights, (list, tuple, dict)) and any(isinstance(w, str) for w in (weights.values() if isinstance(weights, dict) else weights)):
        # model.compile('adam', 'sparse_categorical_crossentropy', ['accuracy']): in Keras 3 the third
        # argument is loss_weights, not metrics, and the student's own fit raises on the strings
        raise CompileProblem(
            f"compile() was given {weights!r} as its third argument, which Keras 3 reads as loss_weights, not metrics, so "
            "the model has no metric and its own fit fails (\"dtype='string' is not a valid dtype\"): name the arguments, "
            f"model.compile(optimizer='adam', loss='{fitting}', metrics=['accuracy'])")
    optimizer = config.get("optimizer")
    if isinstance(optimizer, str):
        optimizer = {"class_name": optimizer.capitalize() if optimizer != "sgd" else "SGD", "config": {}}
    if not isinstance(optimizer, dict) or optimizer.get("class_name") not in OPTIMIZERS:
        name = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
        raise CompileProblem(f"optimizer {name!r} is not one of Keras' built-in optimizers; use optimizer='adam'")
    loss, from_logits = _loss_name(config.get("loss"), fitting)
    if loss not in CROSS_ENTROPIES:
        form = "one-hot vectors" if one_hot_labels else "class indices"
        raise CompileProblem(f"loss {loss!r} is not a cross-entropy for a classifier; the labels are {form}, so use loss='{fitting}'")
    return CompileChoices(optimizer, loss, CROSS_ENTROPIES[loss], from_logits, tuple(_metric_names(config.get("metrics"))))


def _loss_name(loss, fitting: str) -> tuple[str, bool]:
    if isinstance(loss, str):
        return loss, False
    if isinstance(loss, dict):
        inner = loss.get("config")
        if loss.get("class_name") == "function" and isinstance(inner, str):
            return inner, False
        from_logits = bool(inner.get("from_logits")) if isinstance(inner, dict) else False
        return str(loss.get("class_name")), from_logits
    if loss is None:
        raise CompileProblem(f"model.compile(...) has no loss: add loss='{fitting}'")
    raise CompileProblem(f"the loss {type(loss).__name__} cannot be read; use loss='{fitting}'")


def _metric_names(metrics) -> list[str]:
    names = []
    for metric in metrics or []:
        if isinstance(metric, str):
            names.append(metric)
        elif isinstance(metric, dict):
            inner = metric.get("config")
            names.append(inner.get("name") if isinstance(inner, dict) and inner.get("name") else str(metric.get("class_name")))
        elif isinstance(metric, list):  # per-output metrics
            names.extend(_metric_names(metric))
    return names


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    history: dict[str, list[float]]
    val_accuracy: float
    confusion: list[list[int]]
    seconds: float
    placement: str
    device: str
    replicas: int
    path: str = ""  # fast path or full training, and why
    misclassified: tuple = ()  # a few wrong validation images: index, true, predicted, JPEG
    batch_norm_settled: bool = False  # moving statistics re-estimated after training (_settle_batch_norm)
    stopped: str = ""  # why training stopped before its last epoch (Settings.settled_above), else ""


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int
    batch_size: int  # per replica
    seed: int
    image_size: int
    # Stop once the verdict is settled: the validation accuracy at or above this for
    # SETTLED_EPOCHS epochs in a row (the threshold with a margin; None: train every epoch).
    settled_above: float | None = None


SETTLED_EPOCHS = 2  # epochs in a row at or above Settings.settled_above before training stops


_QUIETED: list = []  # quiet_tensorflow has muted this process's start-up notes


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and Keras' advice off the grader's console (progress lines stay readable)."""
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", module=r"keras(\..*)?$")
    if not _QUIETED:
        # TensorFlow's C++ side writes its start-up notes (oneDNN, CUDA probing) to fd 2
        # before any log level applies: import it (if a fork server has not) and probe the
        # devices with fd 2 muted, once in each process.
        _QUIETED.append(True)
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
                import tensorflow as tf

                tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _deterministic(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(chain, choices: CompileChoices, dataset: data_mod.Dataset, settings: Settings, placement: Placement,
          cache=None, base_weights=None):
    """Train a fresh copy of `chain` (a reference.graph.Chain); returns (TrainingRun, trained model).

    The copy is made from the layers' configs, never from their weights: the pretrained
    base gets `base_weights` (the grader's own; by default the chain's), and the layers
    after it a fresh initialisation drawn right after seeding, so they start the same
    whether they are trained behind the base or alone.

    With a FeatureCache and a frozen, deterministic prefix, only the layers after the
    base (the head) are trained, on the prefix's cached outputs, with the same batches,
    order, epochs and seed; the trained model is then the head alone.
    """
    import keras

    from reference import cache as cache_mod

    started = time.monotonic()
    replaced = replaced_initial_values(chain)  # before any work: a config that carries arrays is not trained
    quiet_tensorflow()
    base = chain.base_layer
    if base_weights is None and base is not None:
        base_weights = base.get_weights()
    run_key = _run_key(chain, choices, dataset, settings, placement, base_weights, cache is not None)
    done = _RUNS.take(run_key)
    if done is not None:
        # The same layers, compiled the same way, trained in this process before: training is
        # seeded and deterministic, so its run is this one's (a class hands in the lab's own
        # suggested models many times over).
        _RUNS.keep(run_key, done)
        return done
    _deterministic(settings.seed)
    cut = cache_mod.split(chain) if cache is not None else cache_mod.Split(0, "the feature cache is off")
    if cut.fast and not _fits(base, base_weights):
        cut = cache_mod.Split(0, f"{base.name} is not the base whose weights the grader holds")
    if cut.fast:
        names = ", ".join(layer.name for layer in chain.layers[: cut.prefix])
        tensors = _cached_features(cache, chain, base_weights, dataset, settings)
        path = f"fast path: head trained on cached outputs of {names}"
    else:
        path = f"full training ({cut.reason})"
    key = _head_key(chain, choices, settings, placement, tensors["train"].shape[1:]) if cut.fast and placement.replicas == 1 else None
    kept = _HEADS.take(key)
    if kept is not None:
        # The same head, compiled the same way, as a head already trained in this process:
        # every variable back to the state it had before its first step (the seeded
        # initialisation, the optimizer's and the dropout's state), and its traced epochs
        # used again (tracing them is about half a second per model).
        trained, initial, epochs = kept
        for variable, value in initial:
            variable.assign(value)
    else:
        trained = _compiled(chain, choices, settings, placement, base_weights, tensors if cut.fast else None)
        initial = [(variable, variable.numpy()) for variable in [*trained.variables, *trained.optimizer.variables]]
        # (On one CPU, where fit runs its steps as _Epochs does: not in a distribution
        # strategy's replica, and without XLA, which fit turns on where a GPU is.)
        epochs = _Epochs(trained, settings.batch_size) if key is not None and placement.device == "CPU" else None
    if cut.fast:
        batches = _feature_batches(tensors, choices, settings.batch_size * placement.replicas, len(dataset.classes))
    else:
        batches = _image_batches(dataset, choices, settings, settings.batch_size * placement.replicas)
    # Trained in full on one CPU, on images that fit in memory: the same steps on the same
    # batches as fit, a whole epoch in one compiled call (fit's Python between steps was
    # most of a small convnet's training time).
    images = _images_in_memory(batches, dataset) if not cut.fast and placement.device == "CPU" and placement.replicas == 1 else None
    if images is not None:
        epochs = _Epochs(trained, settings.batch_size)

    # Like the lab (steps_per_epoch = images // its batch size), train on whole batches only:
    # a last, partial batch can also leave a replica with no images at all.
    if images is not None and epochs.can_train(images[0][0], images[1][0]):
        history = epochs.fit(*images, settings.epochs, settings.settled_above)
    elif epochs is not None and cut.fast and epochs.can_train(tensors["train"], tensors["validation"]):
        history = epochs.fit(*_features_and_labels(tensors, choices, len(dataset.classes)), settings.epochs, settings.settled_above)
    else:
        fit = trained.fit(batches("train", True), validation_data=batches("validation", placement.replicas > 1), epochs=settings.epochs,
                          verbose=0, callbacks=[_StopWhenSettled(settings.settled_above)] if settings.settled_above is not None else None)
        history = {name: [float(v) for v in values] for name, values in fit.history.items()}
    trained_epochs = max((len(values) for values in history.values()), default=settings.epochs)
    stopped = ""
    if trained_epochs < settings.epochs:
        stopped = (f"stopped after {trained_epochs} of {settings.epochs} epochs: the validation accuracy was at or above "
                   f"{settings.settled_above:.2f} for {SETTLED_EPOCHS} epochs in a row, which settles the verdict")
        path += f"; {stopped}"
    if replaced:
        path += f"; initial values the model's config gave ({', '.join(replaced)}) replaced by the layers' own seeded initialisation"
    settled = _settle_batch_norm(trained, batches("train", True))
    if settled:
        path += "; batch-normalisation statistics then re-estimated over the training images"

    # The verdict's accuracy covers every validation image: the model is called directly,
    # batch by batch, outside the replicas (the curves above may skip a last partial batch).
    labels, predictions = [], []
    for inputs, batch_labels in batches("validation", False):
        predictions.append(np.asarray(trained(inputs, training=False)).argmax(axis=-1))
        labels.append(np.asarray(batch_labels))
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    if choices.one_hot:
        labels = labels.argmax(axis=-1)
    names = dataset.classes
    classes = len(names)
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    wrong = [int(i) for i in np.flatnonzero(predictions != labels)[:MISCLASSIFIED_SHOWN]]
    jpegs = data_mod.original_images(dataset, dataset.validation_files, wrong)
    misclassified = tuple(
        {"index": i, "true": names[labels[i]], "predicted": names[predictions[i]],
         "jpeg_base64": base64.b64encode(jpegs[i]).decode("ascii")}
        for i in wrong if i in jpegs
    )
    run = TrainingRun(
        history=history,
        val_accuracy=float((predictions == labels).mean()),
        confusion=confusion.tolist(),
        seconds=round(time.monotonic() - started, 2),
        placement=placement.description,
        device=placement.device,
        replicas=placement.replicas,
        path=path,
        misclassified=misclassified,
        batch_norm_settled=settled,
        stopped=stopped,
    )
    if key is not None:
        _HEADS.keep(key, (trained, initial, epochs))
    _RUNS.keep(run_key, (run, trained))
    return run, trained


def _run_key(chain, choices: CompileChoices, dataset, settings: Settings, placement: Placement, base_weights, cached: bool) -> str:
    """What makes two trainings give the same run: the chain's layers' classes and configs
    (each layer's own name aside: names draw no numbers), the compile choices, the settings,
    the placement, the data, the base's weights, and whether the feature cache is used."""
    from reference import cache as cache_mod

    layers = []
    for layer in chain.layers:
        config = layer.get_config()
        config.pop("name", None)
        layers.append([type(layer).__name__, config])
    text = json.dumps([layers, dataclasses.asdict(choices), dataclasses.asdict(settings), placement.description, chain.base,
                       data_mod.dataset_identity(dataset), cache_mod.weights_digest(base_weights) if base_weights is not None else "",
                       cached], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Bounded:
    """The last few things of one kind this process made, by key: up to `size`, fewer when
    together they measure more than `limit` (`_measure` of each); the most recent always
    stays. `take` removes what it returns (one user at a time); `hits` counts them."""

    def __init__(self, size: int, limit: int):
        self.size, self.limit, self.items, self.hits = size, limit, {}, 0

    def take(self, key):
        found = None if key is None else self.items.pop(key, None)
        self.hits += found is not None
        return found

    def keep(self, key, value) -> None:
        self.items[key] = value
        while len(self.items) > 1 and (len(self.items) > self.size or sum(map(self._measure, self.items.values())) > self.limit):
            self.items.pop(next(iter(self.items)))

    def _measure(self, value) -> int:
        raise NotImplementedError


class _Done(_Bounded):
    """The last few training runs of this process and their trained models, by _run_key,
    bounded by count and by the models' parameters (a run holds its trained model: the
    frozen check reads the base's weights after training)."""

    def __init__(self, size: int, max_parameters: int = 32_000_000):
        super().__init__(size, max_parameters)

    def _measure(self, value) -> int:
        _, trained = value
        return int(sum(np.prod(w.shape) for w in trained.weights))


_RUNS = _Done(16)


def _compiled(chain, choices: CompileChoices, settings: Settings, placement: Placement, base_weights, tensors):
    """A fresh copy of the chain (its head alone, on `tensors`, the cached features), compiled
    with the student's choices; its optimizer's state made (so that it can be kept, see _HEADS)."""
    import keras

    with placement.strategy.scope():
        if tensors is not None:
            entry, prefix = keras.Input(shape=tuple(tensors["train"].shape[1:])), []
        else:
            entry = keras.Input(shape=(settings.image_size, settings.image_size, 3))
            prefix = _fresh_prefix(chain, base_weights)
        keras.utils.set_random_seed(settings.seed)
        head = [fresh_copy(layer) for layer in chain.layers[len(chain.layers) - len(chain.head) :]]
        trained = keras.Sequential([entry, *prefix, *head])
        optimizer = keras.optimizers.deserialize(copy.deepcopy(choices.optimizer))  # it rewrites the dict it is given
        loss = keras.losses.get(choices.loss) if choices.loss[0].islower() else getattr(keras.losses, choices.loss)(from_logits=choices.from_logits)
        # Several steps per call: the same batches in the same order, without a Python
        # round trip per step (which dominates when only a small head trains).
        # (One step per call across replicas: Keras' multi-step loop fails on distributed input.)
        steps = STEPS_PER_CALL if placement.replicas == 1 else 1
        trained.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], steps_per_execution=steps)
        trained.optimizer.build(trained.trainable_variables)
    return trained


def _head_key(chain, choices: CompileChoices, settings: Settings, placement: Placement, shape) -> str:
    """What makes two heads on the fast path train alike: the layers' classes and configs
    (names included), the compile choices, the seed, the batch size, the input's shape, the
    placement."""
    head = chain.layers[len(chain.layers) - len(chain.head) :]
    parts = [[type(layer).__name__, layer.get_config()] for layer in head]
    text = json.dumps([parts, dataclasses.asdict(choices), settings.seed, settings.batch_size, [int(d) for d in shape],
                       placement.description], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _Kept(_Bounded):
    """The last few trained heads of this process, by _head_key (each is used by one
    training at a time: the grader trains one model at a time per process). A class
    submits a handful of heads, often in turn: up to `size` are kept, fewer when together
    they hold more than `max_values` numbers (the model's and its optimizer's variables
    and their initial copies: about 1.4 million for the lab's head, 6 MiB)."""

    def __init__(self, size: int, max_values: int = 64_000_000):
        super().__init__(size, max_values)

    def _measure(self, value) -> int:
        _, initial, _ = value
        return sum(int(np.size(copy)) * 2 for _, copy in initial)


_HEADS = _Kept(16)


class _Epochs:
    """Keras' own training and test steps, a whole epoch of them in one compiled call, on
    batches sliced from the cached features in the graph: what `model.fit` does on the fast
    path (the same steps on the same batches in the same order, the metrics reset at each
    epoch's start, the validation after each epoch), with no tf.data iterator and no
    Python between steps. The history is bit for bit `fit`'s (tests/test_epochs.py).

    The features are arguments, not captured: the traced epochs serve any features of
    the same shape, so they are kept with the head (_HEADS)."""

    def __init__(self, model, batch_size: int):
        import tensorflow as tf

        self.model, self.batch_size = model, batch_size
        self._train = tf.function(self._train_epoch)
        self._test = tf.function(self._test_epoch)

    def can_train(self, train, validation) -> bool:
        return train.shape[0] >= self.batch_size and validation.shape[0] > 0  # else fit says why

    def fit(self, train, validation, epochs: int, settled_above: float | None = None) -> dict[str, list[float]]:
        history: dict[str, list[float]] = {}
        for _ in range(epochs):
            self.model.reset_metrics()
            logs = {name: float(value) for name, value in self._train(*train).items()}
            self.model.reset_metrics()
            logs.update({f"val_{name}": float(value) for name, value in self._test(*validation).items()})
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            if settled(history, settled_above):
                break
        return history

    def _train_epoch(self, images, labels):
        import tensorflow as tf

        size = self.batch_size
        for step in tf.range(tf.shape(images)[0] // size):  # whole batches only, as fit is given
            self.model.train_step((images[step * size : (step + 1) * size], labels[step * size : (step + 1) * size]))
        return self.model.get_metrics_result()

    def _test_epoch(self, images, labels):
        import tensorflow as tf

        size, count = self.batch_size, tf.shape(images)[0]
        for step in tf.range((count + size - 1) // size):  # every image: a last batch may be partial
            end = tf.minimum((step + 1) * size, count)
            self.model.test_step((images[step * size : end], labels[step * size : end]))
        return self.model.get_metrics_result()


def settled(history: dict[str, list[float]], above: float | None) -> bool:
    """Whether training may stop: the validation accuracy (the student's accuracy metric, as
    the curves show it) at or above `above` for the last SETTLED_EPOCHS epochs."""
    if above is None:
        return False
    curve = next((values for name, values in sorted(history.items()) if name.startswith("val_") and name.endswith("accuracy")), [])
    return len(curve) >= SETTLED_EPOCHS and all(value >= above for value in curve[-SETTLED_EPOCHS:])


def _StopWhenSettled(above: float):
    """fit's way of `settled` (training on several replicas, or from a dataset)."""
    import keras

    class Stop(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch, logs=None):
            for name, value in (logs or {}).items():
                self.history.setdefault(name, []).append(float(value))
            if settled(self.history, above):
                self.model.stop_training = True

    return Stop()


def _features_and_labels(tensors, choices: CompileChoices, classes: int):
    """((train features, labels), (validation features, labels)), the labels as the loss wants them."""
    return tuple((tensors[split], _labels(tensors, split, choices, classes)) for split in ("train", "validation"))


def _labels(tensors, split: str, choices: CompileChoices, classes: int):
    """A split's cached labels, one-hot if the loss wants them so."""
    import tensorflow as tf

    found = tensors[f"{split}_labels"]
    return tf.one_hot(found, classes, dtype=tf.float32) if choices.one_hot else found


def _settle_batch_norm(model, batches) -> bool:
    """Re-estimate the moving statistics of the batch normalisations trained here: one pass
    over the training batches in training mode, each layer keeping the plain average of the
    batches' statistics instead of its running average (which starts at mean 0, variance 1).

    The grader's run is short (a dozen small epochs at demo scale), and a running average
    with Keras' momentum of 0.99 still remembers its start after it; a model with a batch
    normalisation after every convolution then learns its training images perfectly and
    predicts one class for every validation image. In the lab's own longer run the
    averages settle, so the grader lets them settle too. Frozen layers (a pretrained
    base's) keep theirs: they run in inference mode and are left out. No weight changes.
    Returns whether any statistics were re-estimated (a model without such a layer, or
    fewer training images than one batch: none)."""
    import keras

    norms = [layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not norms:
        return False
    momenta = [layer.momentum for layer in norms]
    seen = 0
    try:
        for inputs, _ in batches:
            seen += 1
            for layer in norms:
                layer.momentum = (seen - 1) / seen  # the n-th batch weighs 1/n: a plain average
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return seen > 0


def fresh_copy(layer):
    """A new layer (or nested model) from `layer`'s config, with its trainable flags: its
    initial values the grader's own (see reference/initial.py)."""
    config, _ = initial.decided(layer.get_config(), type(layer).__name__)
    copy = type(layer).from_config(config)
    if hasattr(layer, "_flatten_layers"):
        # parents first: setting a parent's flag also sets its children's, which follow
        for original, made in zip(layer._flatten_layers(include_self=True), copy._flatten_layers(include_self=True)):
            made.trainable = original.trainable
    return copy


def replaced_initial_values(chain) -> tuple[str, ...]:
    """What the trusted copy of `chain` does not take from its config: the initializers that
    carry values, in words (the base's own are the grader's pretrained weights anyway).
    Raises initial.CarriedValues for a config that holds arrays of numbers."""
    replaced: list[str] = []
    for index, layer in enumerate(chain.layers):
        _, found = initial.decided(layer.get_config(), type(layer).__name__)
        if index != chain.base:
            replaced.extend(found)
    return tuple(replaced)


def _fits(layer, weights) -> bool:
    return weights is not None and [tuple(w.shape) for w in layer.weights] == [tuple(np.shape(w)) for w in weights]


def _fresh_prefix(chain, base_weights) -> list:
    """Fresh copies of the layers up to the base, the base holding `base_weights` when they fit."""
    prefix = [fresh_copy(layer) for layer in chain.layers[: len(chain.layers) - len(chain.head)]]
    if prefix and _fits(prefix[-1], base_weights):
        prefix[-1].set_weights(base_weights)
    return prefix


def _image_batches(dataset, choices, settings, global_batch):
    import tensorflow as tf

    def batches(split: str, whole_batches: bool):
        files = dataset.train_files if split == "train" else dataset.validation_files
        pipeline = data_mod.read_labeled(dataset, files, one_hot=choices.one_hot)
        return pipeline.cache().batch(global_batch, drop_remainder=whole_batches).prefetch(tf.data.AUTOTUNE)

    return batches


IMAGES_IN_MEMORY = 256 * 2**20  # bytes of decoded training and validation images held as tensors at most


def _images_in_memory(batches, dataset):
    """((train images, labels), (validation images, labels)) as tensors, in the pipeline's
    order, or None where they would take more than IMAGES_IN_MEMORY."""
    import tensorflow as tf

    try:  # JPEGs decode to about ten times their bytes, and float32 is four bytes a value
        stored = sum(os.path.getsize(path) for path in dataset.files)
    except OSError:
        return None
    if stored * 40 > IMAGES_IN_MEMORY:
        return None
    held = []
    for split in ("train", "validation"):
        parts = list(batches(split, False))
        if not parts:
            return None
        held.append((tf.concat([images for images, _ in parts], 0), tf.concat([labels for _, labels in parts], 0)))
    if sum(int(np.prod(images.shape)) * 4 for images, _ in held) > IMAGES_IN_MEMORY:
        return None
    return tuple(held)


def _feature_batches(tensors, choices, global_batch, classes: int):
    import tensorflow as tf

    def batches(split: str, whole_batches: bool):
        images, labels = tensors[split], _labels(tensors, split, choices, classes)
        count = images.shape[0] // global_batch if whole_batches else -(-images.shape[0] // global_batch)
        # Slicing whole batches out of the cached array: the same batches as .batch(), one copy fewer.
        return tf.data.Dataset.range(count).map(
            lambda i: (images[i * global_batch : (i + 1) * global_batch], labels[i * global_batch : (i + 1) * global_batch])
        )

    return batches


def _cached_features(cache, chain, base_weights, dataset, settings):
    """The prefix's outputs on the train and validation images, as tensors (made once per process)."""
    import tensorflow as tf

    from reference import cache as cache_mod

    key = cache_mod.prefix_key(chain.layers[: chain.base + 1], base_weights, data_mod.dataset_identity(dataset), settings.image_size)

    def build():
        prefix = _fresh_prefix(chain, base_weights)
        arrays = {}
        for split, files in (("train", dataset.train_files), ("validation", dataset.validation_files)):
            pipeline = data_mod.read_labeled(dataset, files, one_hot=False).batch(32)
            arrays[split] = cache_mod.compute_features(prefix, (images for images, _ in pipeline))
            arrays[f"{split}_labels"] = np.concatenate([np.asarray(labels) for _, labels in pipeline])
        return arrays

    return cache.get_or_build(key, build, keep=lambda arrays: {name: tf.constant(value) for name, value in arrays.items()})
