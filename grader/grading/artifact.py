"""What came back from the sandbox, read as data: capped JSON, HDF5 weights, no pickle.

The model is rebuilt in the grader's process from its Keras config with
`safe_mode=True`, after every object the config names (nested ones, activations,
initializers, the compile config's optimizer and loss) passed an allow-list: a Lambda
layer, a class or function the student defined, or anything unknown is refused with a
message, never run. The weights file's declared shapes are checked before it is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from grader.faults import Refused
from grader.grading import budget as budget_mod
from grader.grading.budget import Budget
from grader.sandbox import runfiles
from grader.sandbox.runfiles import MAX_JSON_BYTES, MAX_WEIGHTS_BYTES


ALLOWED_LAYERS = frozenset(
    """Sequential Functional Model InputLayer Conv2D DepthwiseConv2D SeparableConv2D
    BatchNormalization LayerNormalization ReLU Activation ZeroPadding2D Add Multiply
    Concatenate Dense Flatten GlobalAveragePooling2D GlobalMaxPooling2D MaxPooling2D
    AveragePooling2D Dropout SpatialDropout2D GaussianNoise GaussianDropout Reshape
    Rescaling Resizing RandomFlip RandomRotation RandomZoom RandomTranslation
    RandomContrast RandomBrightness RandomCrop CenterCrop Normalization Softmax LeakyReLU ELU PReLU
    AlphaDropout SpatialDropout1D SpatialDropout3D GlobalAveragePooling1D GlobalMaxPooling1D""".split()
)


@dataclasses.dataclass(frozen=True)
class Artifact:
    log: tuple[dict, ...]  # one entry per cell that started
    export: dict  # what the export step found (`found`, `problem`, ...)
    model_json: str | None
    compile_config: dict | None
    weights_path: str | None

    def cell(self, key: str) -> dict | None:
        return next((entry for entry in self.log if entry.get("key") == key), None)


def read(out_dir: str) -> Artifact:
    """What the run left in `out_dir`, read as data. Each file is opened by `runfiles`:
    no link followed, regular files only, size-checked before reading; a file that
    fails that counts as absent. `weights_path` is set only for a regular file within
    its cap, in a folder the grader made (the sandbox copies the run's files out of
    its scratch folder after the run), so a path is safe to hand to h5py."""
    log = _json(out_dir, "log.json", default=[])
    if not isinstance(log, list):
        log = []
    export = _json(out_dir, "export.json", default={})
    if not isinstance(export, dict):
        export = {}
    try:
        model_json = _text(out_dir, "model.json")
    except Refused:
        model_json = None
    compile_config = _json(out_dir, "compile.json", default=None)
    return Artifact(
        log=tuple(entry for entry in log if isinstance(entry, dict)),
        export=export,
        model_json=model_json,
        compile_config=compile_config if isinstance(compile_config, dict) else None,
        weights_path=_checked_path(out_dir, "model.weights.h5", MAX_WEIGHTS_BYTES),
    )


def _checked_path(out_dir: str, name: str, limit: int) -> str | None:
    """The file's path if it is a regular file of at most `limit` bytes, reached without a link."""
    try:
        os.close(runfiles.open_regular(out_dir, name, limit))
    except (Refused, OSError):
        return None
    return os.path.join(out_dir, name)


def _text(out_dir: str, name: str) -> str | None:
    """The file's text (None if there is none); Refused if it is a link, not a regular
    file, or over MAX_JSON_BYTES."""
    try:
        data = runfiles.read(out_dir, name, MAX_JSON_BYTES)
    except OSError as error:
        raise Refused(f"{name} cannot be read ({error.strerror})") from None
    return None if data is None else data.decode("utf-8", errors="replace")


def _json(out_dir: str, name: str, default: Any) -> Any:
    try:
        text = _text(out_dir, name)
        return default if text is None else json.loads(text)
    except (ValueError, RecursionError, Refused):
        return default


# Every kind of object a model or compile config may name; anything else is refused
# before Keras's deserialiser sees the config.
ALLOWED_OBJECTS = ALLOWED_LAYERS | frozenset(
    """__keras_tensor__ DTypePolicy FloatDTypePolicy
    GlorotUniform GlorotNormal HeUniform HeNormal LecunUniform LecunNormal RandomUniform RandomNormal
    TruncatedNormal VarianceScaling Orthogonal Identity Zeros Ones Constant
    L1 L2 L1L2 OrthogonalRegularizer MaxNorm MinMaxNorm NonNeg UnitNorm
    Adam AdamW SGD RMSprop Adagrad Adadelta Adamax Nadam Ftrl Lion Lamb
    ExponentialDecay PiecewiseConstantDecay PolynomialDecay InverseTimeDecay CosineDecay CosineDecayRestarts
    SparseCategoricalCrossentropy CategoricalCrossentropy BinaryCrossentropy MeanSquaredError MeanAbsoluteError
    KLDivergence CategoricalFocalCrossentropy Hinge CategoricalHinge
    Accuracy SparseCategoricalAccuracy CategoricalAccuracy BinaryAccuracy TopKCategoricalAccuracy
    SparseTopKCategoricalAccuracy Mean MeanMetricWrapper""".split()
)
MAX_DEPTH = 64  # nesting of a config; a keras.applications base inside a Sequential needs about 12

# Activations given as TensorFlow functions (`tf.nn.softmax`) are saved by Keras as
# {"class_name": "function", "config": <the function's name>}; these are the Keras
# activations they are. Nothing is imported by name: an unknown function is refused.
TF_ACTIVATIONS = {
    "softmax_v2": "softmax", "softmax": "softmax", "log_softmax_v2": "log_softmax", "log_softmax": "log_softmax",
    "relu": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "elu": "elu", "selu": "selu", "gelu": "gelu",
    "sigmoid": "sigmoid", "tanh": "tanh", "softplus": "softplus", "softsign": "softsign", "swish": "silu",
    "silu": "silu", "exponential": "exponential", "linear": "linear", "hard_sigmoid": "hard_sigmoid",
}


# Losses and metrics given as Keras functions (`tf.keras.losses.sparse_categorical_crossentropy`)
# are saved the same way; they are kept as they are, by name.
KERAS_FUNCTIONS = frozenset(
    """sparse_categorical_crossentropy categorical_crossentropy binary_crossentropy mean_squared_error
    mean_absolute_error kl_divergence categorical_hinge hinge sparse_categorical_accuracy categorical_accuracy
    binary_accuracy accuracy sparse_top_k_categorical_accuracy top_k_categorical_accuracy""".split()
)


def vetted(config: Any, what: str) -> Any:
    """`config` with TensorFlow activation functions named as Keras activations, after
    checking every object it names (nested ones too) against the allow-list: a class
    outside it, a module outside Keras, a custom registered name or nesting deeper than
    MAX_DEPTH is refused, so Keras's deserialiser only ever sees built-in objects."""
    refused: set[str] = set()

    def walk(node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Refused(f"the {what} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, list):
            return [walk(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("class_name") == "function":
            name, module = node.get("config"), str(node.get("module"))
            known = module in ("None", "builtins") or module.startswith(("keras", "tensorflow"))
            if known and isinstance(name, str) and name in TF_ACTIVATIONS:
                return TF_ACTIVATIONS[name]
            if known and name in KERAS_FUNCTIONS:
                return node
            refused.add(f"the function {name!r}")
            return node
        if "class_name" in node:
            kind, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
            if kind not in ALLOWED_OBJECTS:
                refused.add(str(kind))
            elif module is not None and not (isinstance(module, str) and module.split(".")[0] == "keras"):
                refused.add(f"{kind} from {module}")
            elif registered not in (None, kind):
                refused.add(f"{kind} registered as {registered}")
        return {key: walk(value, depth + 1) for key, value in node.items()}

    cleaned = walk(config, 0)
    if refused:
        raise Refused(
            f"the {what} uses {', '.join(sorted(refused))}, which the grader does not rebuild: "
            "use the built-in Keras layers, activations and settings of the lab (a Lambda layer, a function "
            "or a class of your own cannot be checked safely)"
        )
    return cleaned


class _Rebuilt:
    """The last few models rebuilt from their configs, by the config's hash, each with
    how Keras' weights file lays out its variables (see _dataset_names).

    A class submits a handful of configs (same layers, same names: every run is a fresh
    interpreter), often in turn, and rebuilding one with a pretrained base costs about 1.4 s
    (building it from its config, finding its variables' places in a file): up to `size`
    models are kept, fewer when together they hold more than `max_parameters` (about
    15 MiB a model with the lab's base and head; at most `max_parameters` * 4 bytes
    of weights). Nothing of an earlier submission can remain in a model taken from here:
    the next submission's weights are either all read before any is assigned, every
    variable then assigned, or loaded by load_weights into a model zeroed first (see rebuild)."""

    def __init__(self, size: int = 16, max_parameters: int = 64_000_000):
        self.size, self.max_parameters, self.models = size, max_parameters, {}

    def take(self, key: str):
        found = self.models.pop(key, None)
        if found is not None:
            self.models[key] = found  # most recently used last
        return found

    def keep(self, key: str, model, layout) -> None:
        self.models[key] = (model, layout)
        while len(self.models) > 1 and (len(self.models) > self.size or self._parameters() > self.max_parameters):
            self.models.pop(next(iter(self.models)))

    def _parameters(self) -> int:
        return sum(_size(variable) for model, _ in self.models.values() for variable in model.weights)


def _dtype(variable) -> str:
    return str(getattr(variable.dtype, "name", variable.dtype))


def _zeros(variable):
    import numpy as np

    return np.zeros(tuple(variable.shape), dtype=_dtype(variable))


REBUILT = _Rebuilt()
MARKED_VARIABLES = 2**20  # float32 holds every whole number up to 2**24 exactly


def rebuild(model_json: str, weights_path: str | None, max_parameters: int = 0, budget: Budget | None = None):
    """The student's model, rebuilt from its config with safe_mode and its weights loaded.

    Refused (the student's to fix): a config that names anything outside the allow-list,
    a model over the budget (`budget`, or just `max_parameters`; 0: no bound), a model
    with weights but no weights file, and a weights file whose datasets do not have the
    model's shapes or are over the budget for reading (see _examine)."""
    budget = budget or Budget(parameters=max_parameters)
    key = hashlib.sha256(model_json.encode("utf-8", errors="replace")).hexdigest()
    found = REBUILT.take(key) if weights_path is not None else None
    if found is None:
        model = _from_config(model_json, budget)
        found = (model, _dataset_names(model))
        REBUILT.keep(key, *found)
    model, layout = found
    _over_budget(model, budget)
    if model.weights and weights_path is None:
        raise Refused("the run saved no weights for the model, so its base cannot be checked: keep model.save_weights-able layers and let the cell finish")
    if weights_path is not None and model.weights:
        examined = _examine(weights_path, model, budget)
        arrays = _read_as_keras_would(weights_path, model, layout, examined)
        if arrays is not None:
            for variable, array in zip(model.weights, arrays):
                variable.assign(array)
            return model
        for variable in model.weights:  # load_weights may stop halfway: nothing earlier may remain
            variable.assign(_zeros(variable))
        try:
            model.load_weights(weights_path)
        except Exception as error:
            raise Refused(f"the model's weights do not fit its layers: {type(error).__name__}: {error}") from None
    return model


def _dataset_names(model) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """Where `model.save_weights` puts each of the model's weights, in `model.weights`'
    order, and the groups it makes: found by Keras' own saver, each variable filled with
    its number, the model saved, the numbers read back. None when that cannot tell them apart (weights that
    are not all floating point, too many to number, a saved array none was filled with,
    or the saver failing): such models' files are loaded by `load_weights`. Made once per
    rebuilt config."""
    import tempfile

    import h5py
    import numpy as np

    weights = model.weights
    if not weights or len(weights) > MARKED_VARIABLES or any(_dtype(w) not in ("float32", "float64") for w in weights):
        return None
    names: dict[int, str] = {}
    try:
        for number, variable in enumerate(weights, start=1):
            variable.assign(np.full(tuple(variable.shape), number, dtype=_dtype(variable)))
        with tempfile.TemporaryDirectory(prefix="grader-names-") as folder:
            path = os.path.join(folder, "marked.weights.h5")
            model.save_weights(path)
            with h5py.File(path, "r") as handle:
                found = _examine_open(handle, None, Budget())
                layout = (found.groups, found.datasets) if found.plain else None
                for name in layout[1] if layout else ():
                    values = np.unique(np.asarray(handle[name][()]))
                    whole = values.size == 1 and np.isfinite(values[0]) and values[0] == int(values[0])
                    names[int(values[0]) if whole else -len(names) - 1] = name
    except Exception:  # the grader's own model and file: a failure here only costs the straight read
        return None
    finally:
        for variable in weights:
            variable.assign(_zeros(variable))
    if sorted(names) != list(range(1, len(weights) + 1)) or layout is None:
        return None
    return tuple(names[number] for number in range(1, len(weights) + 1)), frozenset(layout[0])


def _read_as_keras_would(path: str, model, layout, examined: "Examined | None" = None) -> list | None:
    """The arrays `load_weights` would assign, read straight from the file (a tenth of its
    time: no walk through every layer's attributes), when the file is laid out exactly as
    Keras saves this model (and any optimizer's state): the same groups and datasets, each
    of its variable's shape and type, plain arrays stored in the file itself (no link, no
    external or virtual storage, no attribute such as Keras' bfloat16 mark); else None
    (then `load_weights` itself loads the file, or says why it cannot)."""
    import h5py
    import numpy as np

    if layout is None:
        return None
    names, groups = layout
    arrays = []
    try:
        with h5py.File(path, "r") as handle:
            found = examined or _examine_open(handle, None, Budget())
            if not found.plain or (found.groups, found.datasets) != (set(groups), set(names)):
                return None  # a link, a group or a dataset Keras would not have written
            for variable, name in zip(model.weights, names):
                dataset = handle[name]
                if (tuple(dataset.shape) != tuple(variable.shape) or dataset.dtype != np.dtype(_dtype(variable))
                        or dataset.external or dataset.is_virtual or len(dataset.attrs)):
                    return None
                arrays.append(dataset[()])
    except Exception:  # a file h5py cannot read through: load_weights says what is wrong with it
        return None
    return arrays


def _size(variable) -> int:
    count = 1
    for dimension in variable.shape:
        count *= int(dimension)
    return count


@dataclasses.dataclass(frozen=True)
class Examined:
    """A weights file as one walk of its links found it."""

    groups: frozenset[str]  # every group's path (the optimizer's state left out: the rebuilt model has none)
    datasets: frozenset[str]  # every dataset's path (likewise)
    arrays: tuple[tuple[str, tuple, str], ...]  # (path, shape, type) of every dataset, the optimizer's too
    plain: bool  # hard links only, and every dataset a plain array stored in the file itself, as Keras saves


def _examine(path: str, model, budget: Budget) -> Examined:
    """Before anything is read: one walk of the file's links, within the budget, in which
    every group and dataset is reached once; every dataset must be numeric, scalar or of the
    shape of one of the model's variables, stored whole or in chunks no larger than itself,
    compressed at most once, and all of them together no larger than the model and an
    optimizer's state for it, nor than the budget for reading. (A dataset may declare any
    size and store only a fill value; a chunk may be far larger than its dataset and unpack
    to gigabytes; links may lead round in circles: each would cost the grader that much.)"""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return _examine_open(handle, model, budget)
    except Refused:
        raise
    except Exception as error:
        raise Refused(f"the model's weights file cannot be read: {type(error).__name__}: {error}") from None


def _examine_open(handle, model, budget: Budget) -> Examined:
    """_examine on an open file; `model` None: the grader's own file, no shapes checked."""
    import h5py

    shapes = None if model is None else {tuple(int(d) for d in w.shape) for w in model.weights}
    groups: set[str] = set()
    datasets: set[str] = set()
    arrays: list[tuple[str, tuple, str]] = []
    seen, links, plain, total = {handle.id}, 0, True, 0
    pending = [("", handle)]
    while pending:
        prefix, group = pending.pop()
        for key in group:
            links += 1
            if budget.links and links > budget.links:
                raise Refused(f"the weights file has more than {budget.links:,} links, more than the grader follows for one notebook "
                              "([grader] max_links; Keras saves the lab's model with a few hundred): save the weights with "
                              "model.save_weights and leave the file as it is")
            path = f"{prefix}{key}"
            if not isinstance(group.get(key, getlink=True), h5py.HardLink):
                plain = False  # a soft or external link: not followed (load_weights refuses them)
                continue
            item = group[key]
            if item.id in seen:
                raise Refused(f"the weights file reaches {path!r} a second time through another link (a group or an array linked "
                              "twice, or into itself), which Keras never saves: save the weights with model.save_weights")
            seen.add(item.id)
            kept = path != "optimizer" and not path.startswith("optimizer/")
            if isinstance(item, h5py.Group):
                if kept:
                    groups.add(path)
                pending.append((f"{path}/", item))
            elif isinstance(item, h5py.Dataset):
                total += _check_array(path, item, shapes)
                arrays.append((path, tuple(item.shape or ()), str(item.dtype)))
                plain = plain and not (item.external or item.is_virtual or len(item.attrs))
                if kept:
                    datasets.add(path)
            else:
                plain = False
    if model is not None:
        allowed = 3 * sum(_size(w) * 8 for w in model.weights) + 2**20
        if len(arrays) > 3 * len(model.weights) + 16 or total > allowed:
            raise Refused(f"the weights file declares {len(arrays)} arrays and {total:,} bytes, far more than the model has")
    if budget.read_mb and total > budget.read_mb * 2**20:
        raise Refused(f"the weights file's arrays hold {total:,} bytes, more than the {budget.read_mb:,} MiB the grader reads for "
                      "one notebook ([grader] read_mb): make the model smaller")
    return Examined(frozenset(groups), frozenset(datasets), tuple(arrays), plain)


FILTERS_KERAS_MAY_MEET = frozenset((1, 2, 3))  # deflate, shuffle, fletcher32 (h5py's ids): Keras itself writes none


def _check_array(path: str, dataset, shapes) -> int:
    """The bytes the array holds, once it is known to cost no more than that to read."""
    import numpy as np

    shape, dtype = dataset.shape, dataset.dtype
    if shape is None or dtype.kind not in "fiub" or (shapes is not None and shape and tuple(shape) not in shapes):
        raise Refused(f"the weights file holds {path!r} of shape {shape} and type {dtype}, which is none of the model's variables")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    plist = dataset.id.get_create_plist()
    filters = [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]
    if any(f not in FILTERS_KERAS_MAY_MEET for f in filters) or filters.count(1) > 1:
        raise Refused(f"the weights file stores {path!r} compressed more than once, or through filters Keras never uses: "
                      "save the weights with model.save_weights")
    if dataset.chunks is not None:
        chunk = int(np.prod(dataset.chunks, dtype=np.int64)) * dtype.itemsize
        if chunk > max(size, 2**20):
            raise Refused(f"the weights file stores {path!r} in chunks of {chunk:,} bytes, more than the array itself holds "
                          f"({size:,}): unpacking one would cost the grader that much; save the weights with model.save_weights")
        pieces = int(np.prod([-(-int(n) // int(c)) for n, c in zip(shape, dataset.chunks)], dtype=np.int64))
        if pieces > MAX_CHUNKS:
            raise Refused(f"the weights file stores {path!r} in {pieces:,} chunks (reading each is a step of its own): "
                          "save the weights with model.save_weights")
    return size


MAX_CHUNKS = 1024  # chunks of one array: Keras writes none; a file of millions holds the grader in one read


def _over_budget(model, budget: Budget) -> None:
    """Refused if the model costs more to train than the budget (see grader/grading/budget.py)."""
    problem = budget_mod.model_problem(model, budget_mod.model_cost(model, budget.image_size), sum(_size(w) for w in model.weights), budget)
    if problem:
        raise Refused(problem)


def _from_config(model_json: str, budget: Budget | None = None):
    """The model of a vetted config, its variables made only once its cost is within
    `budget`: the layers are built in a scope that records each variable's shape and
    defers its memory, so a config declaring a huge layer costs nothing to refuse."""
    import keras
    from keras.src.backend.common import global_state
    from keras.src.backend.common.variables import initialize_all_variables

    try:
        config = json.loads(model_json)
    except (ValueError, RecursionError) as error:
        raise Refused(f"the model's config is not valid JSON ({error})") from None
    if isinstance(config, dict):
        config.pop("compile_config", None)  # the compile settings are read, and vetted, from compile.json
    config = vetted(config, "model")
    global_state.set_global_attribute("uninitialized_variables", [])
    try:
        try:
            with keras.StatelessScope(initialize_variables=False):
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        except Exception as error:
            raise Refused(f"the model cannot be rebuilt from its config: {type(error).__name__}: {str(error)[:500]}") from None
        _over_budget(model, budget or Budget())
        initialize_all_variables()
        return model
    finally:
        global_state.set_global_attribute("uninitialized_variables", [])
