"""What a sandbox is asked to run with, besides the cells: the same for every submission of
a batch (`Plan`), and the host folders it may read (`Mounts`)."""

from __future__ import annotations

import dataclasses

from grader.config.manifest import Limits


@dataclasses.dataclass(frozen=True)
class Mounts:
    """Host paths made visible, read-only, inside the sandbox."""

    data_dir: str  # mounted at /data
    keras_models: str  # mounted at /keras/models


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a run needs besides its cells: the same for every submission of a batch."""

    mounts: Mounts
    limits: Limits
    image_size: int
    batch_size: int
    sandboxed: bool
    warm: tuple[str, ...] = ()  # modules the run imports before its cells are known (the assignment's own)
    environment: tuple[tuple[str, str], ...] = ()  # the lab's variables: name -> template (see sandbox_env)
    answer: str = "model"  # the name the answer defines, exported after the cells run
    kind: str = "model"  # what it is: "model" or "dataset"
    count_limit: int = 0  # a dataset's elements are counted up to this many (one more than the data's files)
