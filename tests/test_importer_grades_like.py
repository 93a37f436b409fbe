"""`grader new` on the transfer lab's pair as the codelab ships it grades the lab's
scenarios as the hand-made lab does (compared with the session's graded batch, so this
file shares that batch's worker; the rest of the importer's tests are in test_importer.py)."""

import pytest

from grader.cli import main
from grader.config import manifest as manifest_mod
from conftest import ASSIGNMENT, assert_grades_like
from test_importer import colab_pair


@pytest.mark.slow
def test_it_grades_like_the_hand_made_assignment(tmp_path, graded, feature_cache):
    pair = colab_pair(tmp_path)
    folder = tmp_path / "imported"
    from labs import flowers

    assert main(["new", str(folder), "--playground", str(pair["playground"]), "--solution", str(pair["solution"]),
                 "--data", flowers.demo_data("tfrecord"), "--weights", flowers.demo_weights(), "--image-size", "96",
                 "--threshold", str(manifest_mod.load(ASSIGNMENT).checks[-1].params["threshold"])]) == 0
    imported = manifest_mod.load(str(folder))
    names = ["solution.ipynb", "untouched_playground.ipynb", "no_softmax.ipynb", "syntax_error.ipynb"]
    assert_grades_like(imported, ASSIGNMENT, names, graded[0], tmp_path, cache_dir=feature_cache)
