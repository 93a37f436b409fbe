"""The same notebooks graded in another order get the same results, byte for byte.

Everything a batch keeps between notebooks (the feature cache in memory, rebuilt models,
the sandbox's zygote, whatever a later speed-up reuses) must leave no trace of one
notebook in the next one's verdict: the results are compared as JSON, timings taken out
(and what the cells printed: the student's own output, with Keras' progress bars that
print how long each step took)."""

import json

import pytest

from grader import context
from grader.grading import pipeline
from reference import training

pytestmark = pytest.mark.slow

# trained on the fast path, with two heads, a wrong one, and one fitted before submission
ORDER = ["solution", "no_softmax", "global_pooling", "prefit_on_validation"]


def _without_timings(value):
    if isinstance(value, dict):
        printed = ("stdout", "stderr") if "source" in value else ()  # a cell
        return {key: _without_timings(item) for key, item in value.items() if not key.endswith("seconds") and key not in printed}
    if isinstance(value, (list, tuple)):
        return [_without_timings(item) for item in value]
    return value


def _grade(manifest, folder, order, out, cache_dir) -> dict[str, str]:
    prepared = pipeline.Grader(context.resolve(manifest, str(out), cache_dir=cache_dir), ahead=True)
    try:
        graded = pipeline.grade_all([pipeline.Work(name, str(folder / f"{name}.ipynb"), name) for name in order], prepared)
        return {work.key: json.dumps(_without_timings(result.to_json()), sort_keys=True) for work, result in graded}
    finally:
        prepared.close()


def test_the_same_notebooks_in_the_reverse_order_get_byte_identical_results(manifest, submissions, feature_cache, tmp_path):
    """solution and prefit_on_validation are the same model, compiled the same way (the
    grader's own initial values replace what prefit_on_validation fitted): the second of
    them to be graded takes the first one's run. In the second pass, the runs kept are
    dropped first, so every model's head is trained again (its traced functions kept, every
    variable reset), but the last: the same model as the first, it takes the first one's run
    again."""
    runs, heads = training._RUNS.hits, training._HEADS.hits
    forward = _grade(manifest, submissions, ORDER, tmp_path / "forward", feature_cache)
    reused = [(training._RUNS.hits - runs, training._HEADS.hits - heads)]
    training._RUNS.items.clear()
    runs, heads = training._RUNS.hits, training._HEADS.hits
    backward = _grade(manifest, submissions, ORDER[::-1], tmp_path / "backward", feature_cache)
    reused.append((training._RUNS.hits - runs, training._HEADS.hits - heads))
    assert list(forward) == ORDER and list(backward) == ORDER[::-1]
    assert {json.loads(forward[name])["status"] for name in ORDER} == {"graded"}
    for name in ORDER:
        assert forward[name] == backward[name], (name, _differences(json.loads(forward[name]), json.loads(backward[name])))
    assert reused == [(1, 0), (1, len(ORDER) - 1)]


def _differences(a, b, path="") -> list:
    """Where two results differ: (path, one, other), for the message."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in _differences(a.get(key), b.get(key), f"{path}.{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, str(a)[:200], str(b)[:200])]
