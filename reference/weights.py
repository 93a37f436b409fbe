"""Pretrained weights for a lab's frozen base: where Keras looks for them.

A lab that builds on a pretrained `keras.applications` model (its `[lab.base]`) asks
Keras for its pretrained weights from the student's own cell. Keras first looks for the
file it would download in `$KERAS_HOME/models/`; the grader puts a file there itself,
under that name, so nothing is downloaded. The file is the instructor's (the real
pretrained file) or the lab's demo weights.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

from reference.hashing import file_sha256


@dataclasses.dataclass(frozen=True)
class Base:
    """A lab's pretrained base: the keras.applications model and the file Keras fetches for it."""

    application: str  # e.g. the name of a keras.applications model
    keras_file: str  # the no-top weights file's name, with {size} for the input size
    keras_sizes: tuple[int, ...] = ()  # sizes with a file of their own; any other uses the largest

    def file_name(self, image_size: int) -> str:
        """The name of the no-top file Keras fetches at this input size."""
        size = image_size if image_size in self.keras_sizes or not self.keras_sizes else max(self.keras_sizes)
        return self.keras_file.format(size=size)


@dataclasses.dataclass(frozen=True)
class Weights:
    """A weights file and what to call it in a scorecard."""

    path: str
    kind: str  # "demo" or "provided"

    @property
    def identity(self) -> str:
        return f"{self.kind} {os.path.basename(self.path)} sha256:{file_sha256(self.path)[:16]}"


class WeightsError(Exception):
    """The weights file is missing or cannot serve the requested model."""


def resolve(path: str, kind: str, base: Base) -> Weights:
    """The weights file, which must exist."""
    weights = Weights(os.path.abspath(path), kind)
    if not os.path.isfile(weights.path):
        raise WeightsError(
            f"weights file {weights.path} not found; pass --weights with the path of Keras's "
            f"{base.keras_file.format(size='<size>')}, or set [weights] file in the manifest"
        )
    return weights


def stage(weights: Weights, keras_home: str, base: Base, image_size: int) -> str:
    """Put the weights where Keras looks before downloading; returns the models dir."""
    models = os.path.join(keras_home, "models")
    os.makedirs(models, exist_ok=True)
    target = os.path.join(models, base.file_name(image_size))
    if not os.path.exists(target) or file_sha256(target) != file_sha256(weights.path):
        # a partial file of this process's own: two workers may stage the same folder at once
        handle, partial = tempfile.mkstemp(dir=models, prefix=os.path.basename(target) + ".", suffix=".partial")
        os.close(handle)
        try:
            shutil.copyfile(weights.path, partial)
            os.chmod(partial, 0o644)  # read in the sandbox by its own user (mkstemp makes it the owner's only)
            os.replace(partial, target)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
    return models


def pretrained_base(base: Base, weights: Weights, image_size: int):
    """The lab's base without its top, loaded with `weights`."""
    import keras

    application = getattr(keras.applications, base.application)
    return application(input_shape=(image_size, image_size, 3), include_top=False, weights=weights.path)
