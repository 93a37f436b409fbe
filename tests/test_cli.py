"""Bad input to the grader itself: a clear message and a non-zero exit."""

import os
import shutil

import pytest

from grader.cli import main
from conftest import ASSIGNMENT


@pytest.fixture
def submission(tmp_path):
    path = tmp_path / "student.ipynb"
    path.write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    return str(path)


def test_bad_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["grade", "--frobnicate"])
    assert stop.value.code == 2


def test_broken_manifest(tmp_path, submission, capsys):
    shutil.copytree(ASSIGNMENT, tmp_path / "a")
    (tmp_path / "a" / "assignment.toml").write_text("[assignment\nname = 1")
    assert main(["grade", str(tmp_path / "a"), submission, "--out", str(tmp_path / "o")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_unknown_check_lists_the_known_ones(tmp_path, submission, capsys):
    shutil.copytree(ASSIGNMENT, tmp_path / "a")
    path = tmp_path / "a" / "assignment.toml"
    path.write_text(path.read_text().replace('check = "frozen_base"', 'check = "frozen_bse"'))
    assert main(["grade", str(tmp_path / "a"), submission, "--out", str(tmp_path / "o"), "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "unknown check 'frozen_bse'" in err and "did you mean 'frozen_base'" in err


def test_missing_dataset(tmp_path, submission, capsys):
    code = main(["grade", ASSIGNMENT, submission, "--out", str(tmp_path / "o"), "--data", str(tmp_path / "none" / "*.tfrec")])
    assert code == 2
    assert "no TFRecord files match" in capsys.readouterr().err


def test_missing_weights(tmp_path, submission, capsys):
    code = main(["grade", ASSIGNMENT, submission, "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "w.h5")])
    assert code == 2
    err = capsys.readouterr().err
    assert "weights file" in err and "not found" in err


def test_missing_submission(tmp_path, capsys):
    assert main(["grade", ASSIGNMENT, str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert "no such submission" in capsys.readouterr().err


def test_release_command_writes_playground(tmp_path, capsys):
    assert main(["release", ASSIGNMENT, "--out", str(tmp_path), "--no-check"]) == 0
    assert os.path.isfile(tmp_path / "keras_flowers_transfer.ipynb") and os.path.isfile(tmp_path / "release.json")


def test_cache_command_shows_and_clears(tmp_path, capsys):
    import numpy as np

    from reference.cache import FeatureCache

    FeatureCache(str(tmp_path))._store("k" * 40, {"x": np.zeros(10)})
    assert main(["cache", "--cache-dir", str(tmp_path)]) == 0
    assert "1 feature set(s)" in capsys.readouterr().out
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear"]) == 0
    assert "removed 1" in capsys.readouterr().out and FeatureCache(str(tmp_path)).entries() == []


def test_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["grade", ASSIGNMENT, "x", "--out", "o", "--jobs", "0"])
    assert "must be 1 or more" in capsys.readouterr().err


@pytest.mark.slow
def test_a_strategy_this_machine_cannot_give_stops_before_anyone_is_graded(tmp_path, submission, capsys):
    from conftest import ROOT

    tiny = tmp_path / "tiny"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "tiny_assignment"), tiny)
    path = tiny / "assignment.toml"
    path.write_text(path.read_text().replace("seed = 1", 'seed = 1\nstrategy = "gpu"'))
    out = tmp_path / "o"
    assert main(["grade", str(tiny), submission, "--out", str(out)]) == 2
    assert "asks for GPUs and none is visible" in capsys.readouterr().err
    assert not (out / "student").exists() and not (out / "index.html").exists()
    import sqlite3

    if (out / "gradebook.sqlite").exists():
        with sqlite3.connect(out / "gradebook.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
