"""The instructor's mistakes stop the run before any student is graded, and nothing is stored."""

import os
import shutil
import sqlite3

import pytest

from grader import preflight
from grader.cli import main
from conftest import ROOT

pytestmark = pytest.mark.slow
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")


@pytest.fixture
def tiny(tmp_path):
    target = tmp_path / "tiny"
    shutil.copytree(TINY, target)
    return target


@pytest.fixture
def submissions(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "alice.ipynb").write_text((tmp_path / "tiny" / "source.ipynb").read_text() if (tmp_path / "tiny").exists() else "{}")
    return folder


def nothing_graded(out) -> bool:
    book = out / "gradebook.sqlite"
    if book.exists():
        with sqlite3.connect(book) as db:
            if db.execute("SELECT COUNT(*) FROM results").fetchone()[0]:
                return False
    return not (out / "alice").exists() and not (out / "index.html").exists()


def edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def test_the_lab_passes_its_own_preflight(capsys):
    assert main(["check", TINY]) == 0
    said = capsys.readouterr().out
    assert "preflight of tiny: passed" in said and "the lab's solution: 1/1" in said and "playground: 0/1" in said


def _keras_weights_of_another_model(path):
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_text("these are not weights"), "does not load into MobileNetV2"),
    (_keras_weights_of_another_model, "does not load into MobileNetV2"),
])
def test_weights_that_do_not_fit_stop_the_run(tiny, submissions, tmp_path, capsys, make, fragment):
    # the tiny lab trains nothing and has no base: here it is given the flowers lab's
    base = open(os.path.join(ROOT, "assignments", "keras_flowers_transfer", "assignment.toml")).read().split("[lab.base]")[1].split("\n\n")[0]
    (tiny / "assignment.toml").write_text((tiny / "assignment.toml").read_text() + "\n[lab.base]" + base + "\n")
    (tiny / "lab.py").write_text((tiny / "lab.py").read_text() + "from labs.flowers import demo_weights  # noqa: F401\n")
    weights = tmp_path / "weights.h5"
    make(weights)
    out = tmp_path / "out"
    assert main(["grade", str(tiny), str(submissions), "--out", str(out), "--weights", str(weights)]) == 2
    assert fragment in capsys.readouterr().err
    assert nothing_graded(out)


def test_a_solution_that_fails_its_own_checks_stops_the_run(tiny, submissions, tmp_path, capsys):
    edit(tiny / "source.ipynb", '"answer = 42\\n"', '"answer = 1 / 0\\n"')
    out = tmp_path / "out"
    assert main(["grade", str(tiny), str(submissions), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the lab's own solution gets 0/1" in err and "ZeroDivisionError" in err
    assert nothing_graded(out)
    assert main(["check", str(tiny)]) == 2


def _too_few_processes(tiny) -> None:
    """A process limit the lab's own first cell (which starts a thread) goes over."""
    edit(tiny / "assignment.toml", "run_timeout = 60", "run_timeout = 60\nmax_processes = 1")
    edit(tiny / "source.ipynb", "import math", "import math, threading; threading.Thread(target=int).start()")


def test_a_limit_the_labs_own_solution_goes_over_stops_the_run(tiny, submissions, tmp_path, capsys):
    _too_few_processes(tiny)
    out = tmp_path / "out"
    assert main(["grade", str(tiny), str(submissions), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the lab's own solution gets 0/1" in err and "processes" in err
    assert nothing_graded(out)


def test_the_sandbox_probe_says_whether_the_solution_still_runs(tiny, tmp_path):
    from grader import context
    from grader.config import manifest

    working = context.resolve(manifest.load(str(tiny)), str(tmp_path / "a"))
    assert preflight.sandbox_problem(working) == ""
    _too_few_processes(tiny)
    broken = context.resolve(manifest.load(str(tiny)), str(tmp_path / "b"))
    assert "processes" in preflight.sandbox_problem(broken)


def test_weights_for_a_lab_without_a_base_stop_the_run(tiny, submissions, tmp_path, capsys):
    weights = tmp_path / "weights.h5"
    weights.write_text("meant for another lab")
    out = tmp_path / "out"
    assert main(["grade", str(tiny), str(submissions), "--out", str(out), "--weights", str(weights)]) == 2
    assert "has no pretrained base" in capsys.readouterr().err
    assert nothing_graded(out)
