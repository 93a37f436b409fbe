"""The budget of the grader's own work on a notebook: how it is set, and how it stops work."""

import dataclasses
import time
from types import SimpleNamespace

import pytest

from grader.config.manifest import CheckSpec, GraderLimits
from grader.grading import budget


def _manifest(checks=(), **limits):
    return SimpleNamespace(grader=GraderLimits(**limits), checks=tuple(checks), image_size=96)


def test_a_class_budget_comes_from_the_manifest_and_the_labs_solution():
    solution = SimpleNamespace(model={"total_params": 1000, "gflops_per_image": 0.5, "activations_per_image": 400})
    found = budget.for_class(_manifest(), solution, 10_000)
    assert (found.parameters, found.gflops, found.activations) == (10_000, 5.0, 4000)
    assert (found.cpu_seconds, found.memory_mb, found.read_mb, found.links) == (900.0, 4096, 512, 20000)
    stated = budget.for_class(_manifest(max_gflops=2, max_activations=7, work_cpu_seconds=30), solution, 10_000)
    assert (stated.gflops, stated.activations, stated.cpu_seconds) == (2.0, 7, 30.0)


def test_the_parameter_budget_is_never_below_a_bound_a_check_declares():
    """The convnet lab's structure check allows a million parameters: so does the budget, whatever its default."""
    from grader.grading.budget import model_budget

    structure = CheckSpec("structure", "model_structure", "", 30, {"layers": ["Dense(5, softmax)"], "parameters": [1000, 1_000_000]})
    manifest, solution = _manifest([structure]), SimpleNamespace(model={"total_params": 24_000})
    found = budget.for_class(manifest, solution, model_budget(manifest, solution))  # as budget.settled makes it
    assert found.parameters == 1_000_000


def test_the_parameter_message_is_the_same_for_every_lab():
    over = budget.model_problem(None, budget.Cost(0, 0), 300_000, budget.Budget(parameters=250_000))
    assert "300,000 parameters, more than the 250,000" in over and "Flatten" not in over and "max_parameters" in over


def test_work_over_its_cpu_time_is_stopped_from_outside_and_says_which_budget():
    watch = budget.Watch(budget.Budget(cpu_seconds=0.3))
    stopped = False
    with watch:
        started = time.process_time()
        try:
            while time.process_time() - started < 60:  # a loop of the grader's own that does not look at the clock
                pass
        except budget.OverBudget:
            stopped = True
    assert stopped and "0.3 s of CPU time ([grader] work_cpu_seconds)" in watch.reason


def test_work_that_grows_past_its_memory_budget_is_stopped():
    watch = budget.Watch(budget.Budget(memory_mb=256))
    held, stopped = [], False
    with watch:
        try:
            for _ in range(32):  # up to 2 GiB if nothing stopped it
                held.append(bytearray(64 * 2**20))
                time.sleep(budget.POLL_SECONDS)  # a step of work: the watch looks between steps
        except budget.OverBudget:
            stopped = True
    held.clear()
    assert stopped and "256 MiB of memory ([grader] work_memory_mb)" in watch.reason


def test_a_watch_that_did_not_fire_leaves_nothing_behind():
    with budget.Watch(budget.Budget(cpu_seconds=60)) as watch:
        sum(range(1000))
    time.sleep(3 * budget.POLL_SECONDS)
    assert not watch.fired
    with budget.Watch(None) as idle:
        pass
    assert idle._watcher is None  # no limit: no thread


def test_a_budget_travels_as_a_frozen_value():
    limits = budget.Budget(cpu_seconds=1, parameters=5)
    assert dataclasses.is_dataclass(limits) and limits.replace(parameters=7).parameters == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.parameters = 3


def test_a_layer_applied_many_times_counts_at_each_application():
    """One convolution shared by twenty places of the graph costs twenty times its FLOPs (a
    count by layers, not by applications, missed them all)."""
    import keras

    from grader.grading import artifact

    def shared(times):
        inputs = keras.Input((16, 16, 3))
        conv = keras.layers.Conv2D(8, 3, padding="same")
        x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
        for _ in range(times):
            x = conv(x)
        return artifact._from_config(keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(x))).to_json())

    once, twenty = budget.model_cost(shared(1)), budget.model_cost(shared(20))
    per_application = 2 * (3 * 3 * 8 * 8) * 16 * 16
    assert twenty.flops - once.flops == 19 * per_application
    assert twenty.activations - once.activations == 19 * 16 * 16 * 8


def test_an_input_of_any_size_is_counted_at_the_labs_image_size():
    """A model that leaves its height and width open (Input((None, None, 3))) is fed the
    lab's pictures: counted at that size, not as costing nothing."""
    import keras

    from grader.grading import artifact

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    model = artifact._from_config(keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))).to_json())
    assert budget.model_cost(model).flops < 1000  # open dimensions: nothing to count them at
    counted = budget.model_cost(model, fill=96)
    assert counted.flops >= 2 * (3 * 3 * 3 * 8) * 96 * 96
    assert counted.activations >= 96 * 96 * 8


def test_a_pooling_window_counts_every_value_it_reads():
    """A pooling as large as the picture writes few values but reads every one of them, once
    for each it writes."""
    import keras

    from grader.grading import artifact

    def pooled(window):
        inputs = keras.Input((64, 64, 3))
        x = keras.layers.AveragePooling2D(window, strides=1, padding="same")(inputs)
        return artifact._from_config(keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))).to_json())

    small, large = budget.model_cost(pooled(2)), budget.model_cost(pooled(40))
    assert large.flops - small.flops == 64 * 64 * 3 * (40 * 40 - 2 * 2)


def test_the_hard_stop_sets_a_cpu_limit_for_the_work_ahead_and_gives_it_back():
    import resource

    before = resource.getrlimit(resource.RLIMIT_CPU)
    spent = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    kept = budget.hard_stop(10)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        assert hard == before[1] and spent + 2 * 10 + 60 - 1 <= soft <= spent + 2 * 10 + 60 + 5
    finally:
        budget.release_hard_stop(kept)
    assert resource.getrlimit(resource.RLIMIT_CPU) == before
    assert budget.hard_stop(0) is None  # no budget: no limit


def test_a_computation_the_watch_cannot_interrupt_is_killed_by_the_kernel():
    """One call into C that never returns to Python: the watch's exception waits for it, the
    kernel's CPU limit does not (the process is killed with SIGXCPU, which the supervising
    process reads as the notebook's going over the budget)."""
    import multiprocessing
    import resource

    def spin():
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        spent = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        budget.hard_stop(0.01)  # a limit of spent + 60 s; lowered below so the test is short
        resource.setrlimit(resource.RLIMIT_CPU, (int(spent) + 1, resource.RLIM_INFINITY))
        import re

        re.match(r"(a+)+$", "a" * 64 + "!")  # catastrophic backtracking: hours inside one C call

    process = multiprocessing.get_context("fork").Process(target=spin)
    process.start()
    process.join(120)
    if process.is_alive():
        process.kill()
    assert process.exitcode == -budget.HARD_STOP
