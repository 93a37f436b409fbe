from grader.config import cells, release
from grader.faults import ManifestError

import dataclasses
import pytest


def test_playground_has_placeholders_and_no_solution(released):
    record, playground = released
    model = next(c for c in playground.cells if c.get("id") == "model")
    assert "# YOUR LAYERS HERE" in model.source and "# YOUR CODE HERE" in model.source
    assert "Dense(5" not in model.source and "BEGIN SOLUTION" not in model.source
    heading = next(c for c in playground.cells if c.get("id") == "model-heading")
    assert "[WORK REQUIRED]" in heading.source
    assert all(not c.get("outputs") for c in playground.cells if c.cell_type == "code")


def test_record_lists_answers_and_locked_checksums(released):
    record, _ = released
    data = record.record()
    assert data["answer_cells"] == ["model"]
    assert set(data["locked_cells"]) == {"imports", "config", "display-utilities", "read-tfrecords", "look", "datasets", "train", "curves",
                                      "predictions", "show-predictions"}
    assert data["aliases"]["model"] == ["XLJNVGwHUDy1"]  # the id the codelab's own notebook gives the answer cell
    answer = next(c for c in record.cells if c.kind == "answer")
    assert "Dense(5, activation='softmax')" in answer.source and not cells.has_solution_markers(answer.source)


def test_release_is_deterministic(manifest, tmp_path):
    first = release.write(*release.build(manifest), str(tmp_path / "a"))
    second = release.write(*release.build(manifest), str(tmp_path / "b"))
    for key in first:
        assert open(first[key]).read() == open(second[key]).read()


def test_unknown_answer_cell_is_a_manifest_error(manifest):
    with pytest.raises(ManifestError, match="has no cell with id nope"):
        release.build(dataclasses.replace(manifest, answer_cells=("nope",)))


def test_answer_cell_without_markers_is_a_manifest_error(manifest):
    with pytest.raises(ManifestError, match="BEGIN SOLUTION"):
        release.build(dataclasses.replace(manifest, answer_cells=("imports",)))


def test_a_server_url_adds_how_to_submit_as_the_last_cell(manifest, tmp_path):
    import nbformat

    from grader.config import match

    record, playground = release.build(manifest)
    paths = release.write(record, playground, str(tmp_path), server="https://grader.example.org/")
    written = nbformat.read(paths["playground"], as_version=4)
    last = written.cells[-1]
    assert last.cell_type == "markdown" and "Download .ipynb" in last.source
    assert "https://grader.example.org/api/upload" in last.source and f"notebook=@{manifest.name}.ipynb" in last.source
    assert len(written.cells) == len(playground.cells) + 1  # the playground given is left as it was
    assert match.match(written, record).found  # the added cell changes nothing a grade depends on
