"""A busy host costs time, never points: honest notebooks keep their scores while other
processes keep every core busy (the sandbox's limits count the run's CPU time)."""

import os
import subprocess
import sys

import pytest

from grader.config import scenarios
from conftest import grade_all, lab_scenarios

pytestmark = pytest.mark.slow
HONEST = ("solution.ipynb", "no_softmax.ipynb")  # one trained to full marks, one that fails a check


def test_honest_notebooks_keep_their_scores_on_a_busy_host(manifest, released, graded, feature_cache, tmp_path):
    record, playground = released
    folder = tmp_path / "subs"
    folder.mkdir()
    for name, content in scenarios.make(record, playground, list(HONEST), lab_scenarios(manifest)).items():
        (folder / name).write_bytes(content)
    cores = len(os.sched_getaffinity(0))  # every core this test may use, at our priority
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        busy = grade_all(manifest, folder, tmp_path / "out", cache_dir=feature_cache)[0]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    alone = graded[0]
    for name in HONEST:
        student = name[: -len(".ipynb")]
        assert busy[student].score == alone[student].score, (student, [(c.id, c.message) for c in busy[student].checks])
        assert [c.status for c in busy[student].checks] == [c.status for c in alone[student].checks], student
