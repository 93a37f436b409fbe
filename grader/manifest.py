"""The assignment manifest (`assignment.toml`), parsed once into typed values."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

from grader.errors import ManifestError

STRATEGIES = ("auto", "tpu", "gpu", "cpu")


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    id: str
    check: str
    title: str
    points: float
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Limits:
    cell_timeout: float = 120.0
    run_timeout: float = 300.0
    memory_mb: int = 8192
    max_processes: int = 256
    output_bytes: int = 64 * 1024  # characters kept per cell and stream (head and tail)
    artifact_mb: int = 64  # largest file the run may write (the model's weights among them)


@dataclasses.dataclass(frozen=True)
class Manifest:
    directory: str
    name: str
    title: str
    version: str
    notebook: str
    answer_cells: tuple[str, ...]
    data_pattern: str  # "demo" or a glob
    image_size: int
    weights_file: str  # "demo" or a path
    epochs: int
    batch_size: int
    seed: int
    strategy: str
    limits: Limits
    checks: tuple[CheckSpec, ...]

    @property
    def notebook_path(self) -> str:
        return os.path.join(self.directory, self.notebook)


def load(directory: str) -> Manifest:
    """Read and validate `directory/assignment.toml`."""
    path = os.path.join(directory, "assignment.toml")
    if not os.path.isfile(path):
        raise ManifestError(
            f"{directory} has no assignment.toml",
            hint="pass the folder of an assignment, e.g. assignments/keras_flowers_transfer",
        )
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path}: not valid TOML: {error}") from None
    return parse(raw, directory=os.path.abspath(directory), path=path)


def parse(raw: dict, directory: str, path: str = "assignment.toml") -> Manifest:
    table = _Table(raw, path)
    assignment = table.sub("assignment")
    data = table.sub("data")
    weights = table.sub("weights")
    training = table.sub("training")
    sandbox = table.sub("sandbox", required=False)

    strategy = training.get("strategy", str, "auto")
    if strategy not in STRATEGIES:
        raise ManifestError.at(path, "[training] strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    answers = assignment.get("answer_cells", list)
    if not answers or not all(isinstance(a, str) for a in answers):
        raise ManifestError.at(path, "[assignment] answer_cells", "must be a non-empty list of cell ids")
    manifest = Manifest(
        directory=directory,
        name=assignment.get("name", str),
        title=assignment.get("title", str),
        version=str(assignment.get("version", (str, int))),
        notebook=assignment.get("notebook", str),
        answer_cells=tuple(answers),
        data_pattern=data.get("pattern", str),
        image_size=_positive(data.get("image_size", int), path, "[data] image_size"),
        weights_file=weights.get("file", str),
        epochs=_positive(training.get("epochs", int), path, "[training] epochs"),
        batch_size=_positive(training.get("batch_size", int), path, "[training] batch_size"),
        seed=training.get("seed", int, 0),
        strategy=strategy,
        limits=Limits(
            cell_timeout=float(sandbox.get("cell_timeout", (int, float), Limits.cell_timeout)),
            run_timeout=float(sandbox.get("run_timeout", (int, float), Limits.run_timeout)),
            memory_mb=_positive(sandbox.get("memory_mb", int, Limits.memory_mb), path, "[sandbox] memory_mb"),
            max_processes=_positive(sandbox.get("max_processes", int, Limits.max_processes), path, "[sandbox] max_processes"),
            output_bytes=_positive(sandbox.get("output_chars", int, Limits.output_bytes), path, "[sandbox] output_chars"),
            artifact_mb=_positive(sandbox.get("file_mb", int, Limits.artifact_mb), path, "[sandbox] file_mb"),
        ),
        checks=tuple(_check(entry, index, path) for index, entry in enumerate(raw.get("checks", []))),
    )
    if not manifest.checks:
        raise ManifestError.at(path, "[[checks]]", "no checks declared", hint="add at least one [[checks]] table")
    ids = [check.id for check in manifest.checks]
    if len(set(ids)) != len(ids):
        raise ManifestError.at(path, "[[checks]]", f"check ids must be unique, got {ids}")
    return manifest


def _check(entry: Any, index: int, path: str) -> CheckSpec:
    if not isinstance(entry, dict):
        raise ManifestError.at(path, f"checks[{index}]", "must be a table")
    table = _Table(entry, path, f"checks[{index}]")
    known = {"id", "check", "title", "points"}
    return CheckSpec(
        id=table.get("id", str),
        check=table.get("check", str),
        title=table.get("title", str, entry.get("check", "")),
        points=float(table.get("points", (int, float))),
        params={key: value for key, value in entry.items() if key not in known},
    )


def _positive(value: int, path: str, where: str) -> int:
    if value <= 0:
        raise ManifestError.at(path, where, f"must be positive, got {value}")
    return value


_MISSING = object()


class _Table:
    """Typed access to one TOML table, with messages that name the key."""

    def __init__(self, raw: dict, path: str, where: str = ""):
        self.raw, self.path, self.where = raw, path, where

    def sub(self, key: str, required: bool = True) -> "_Table":
        value = self.raw.get(key, _MISSING)
        if value is _MISSING:
            if required:
                raise ManifestError.at(self.path, f"[{key}]", "missing table")
            return _Table({}, self.path, f"[{key}]")
        if not isinstance(value, dict):
            raise ManifestError.at(self.path, f"[{key}]", "must be a table")
        return _Table(value, self.path, f"[{key}]")

    def get(self, key: str, kind, default=_MISSING):
        value = self.raw.get(key, default)
        where = f"{self.where} {key}".strip()
        if value is _MISSING:
            raise ManifestError.at(self.path, where, "missing")
        if isinstance(value, bool) or not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ManifestError.at(self.path, where, f"must be {names}, got {value!r}")
        return value
