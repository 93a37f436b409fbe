"""Pick a tf.distribute strategy as part 3 of the lab does: TPU, else GPUs, else the CPU.

More than one logical CPU device (as tests configure) also gives a MirroredStrategy,
so the multi-replica path runs without an accelerator.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Placement:
    strategy: object
    device: str  # "TPU", "GPU" or "CPU"
    replicas: int

    @property
    def description(self) -> str:
        return f"{type(self.strategy).__name__} on {self.replicas} {self.device} replica(s)"


class StrategyError(Exception):
    pass


def _tpu_present() -> bool:
    # Only ask for a TPU where one can be: asking elsewhere may wait on a metadata server.
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")) or os.path.exists("/dev/accel0")


def available(preference: str) -> None:
    """Raise StrategyError if this machine cannot give the strategy asked for."""
    import tensorflow as tf

    if preference == "tpu" and not _tpu_present():
        raise StrategyError("the manifest asks for a TPU and none answers here")
    if preference == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise StrategyError("the manifest asks for GPUs and none is visible here")


def pick(preference: str = "auto") -> Placement:
    import tensorflow as tf

    if preference in ("auto", "tpu") and _tpu_present():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
        return Placement(strategy, "TPU", strategy.num_replicas_in_sync)
    if preference == "tpu":
        raise StrategyError("the manifest asks for a TPU and none answers here")
    if preference in ("auto", "gpu"):
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
            return Placement(strategy, "GPU", len(gpus))
        if preference == "gpu":
            raise StrategyError("the manifest asks for GPUs and none is visible here")
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        strategy = tf.distribute.MirroredStrategy([d.name for d in cpus])
        return Placement(strategy, "CPU", len(cpus))
    return Placement(tf.distribute.get_strategy(), "CPU", 1)


def split_cpu(count: int) -> None:
    """Make `count` logical CPU devices; call before TensorFlow touches a device."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
