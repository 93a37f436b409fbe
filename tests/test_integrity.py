"""What a run reports, held against what the grader sees: the source, the runner's witness."""

from grader.config.match import RunCell
from grader.grading import integrity

SOLUTION = """pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)
pretrained_model.trainable = False
model = tf.keras.Sequential([pretrained_model, tf.keras.layers.Flatten(), tf.keras.layers.Dense(5, activation='softmax')])
model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
%matplotlib inline
model.summary()"""


def cell(source, key="model"):
    return RunCell(key, "answer", source)


def test_an_answer_that_only_builds_its_model_reaches_nothing():
    assert integrity.reaches([cell(SOLUTION)]) == ()
    assert integrity.reaches([cell("import os, json\nprint(os.listdir('/data'))\nlayer.trainable = False\nmodel.optimizer.learning_rate = 0.1")]) == ()


def test_reaching_into_the_runner_is_named_with_where():
    source = ("import gc\nfor thing in gc.get_objects():\n    pass\n"
              "import sys\nframe = sys._getframe().f_back\n"
              "tf.keras.Model.get_compile_config = lambda self: {}\n"
              "os.pwrite(7, b'x', 0)\nopen('/proc/self/fd/7')\n"
              "import threading\nexec('1')\nos.waitpid = print\n")
    found = {reach.what: reach.line for reach in integrity.reaches([cell(source)])}
    assert found["uses the garbage collector (it finds every object, the runner's too)"] == 1
    assert found["reaches the runner's frames"] == 5 and found["reaches a frame's insides"] == 5
    assert found["replaces a method of Keras or of the model (get_compile_config)"] == 6
    assert found["works on file descriptors or processes directly (os.pwrite)"] == 7
    assert found["names the runner's descriptors (/proc/self/fd)"] == 8
    assert "uses threads (alive while the runner works)" in found and "runs code made from a string (exec, eval, compile)" in found
    assert "replaces a function or value of a module (os.waitpid)" not in found  # os is not imported in this cell
    assert {r.what for r in integrity.reaches([cell("setattr(type(model), 'to_json', print)")])} == {"changes attributes by name (setattr, delattr)"}
    hidden = {r.what for r in integrity.reaches([cell("collector = __import__('g' + 'c')\ncollector.get_objects()")])}
    assert hidden == {"imports or reaches modules by a computed name (__import__, __builtins__)"}
    assert "replaces a function or value of a module (os.waitpid)" in {r.what for r in integrity.reaches([cell("import os\nos.waitpid = print")])}
    assert str(integrity.reaches([cell("import gc")])[0]) == "uses the garbage collector (it finds every object, the runner's too) (cell 'model', line 1)"


def test_a_reported_loss_the_source_never_names_is_not_believed():
    mse = SOLUTION.replace("'sparse_categorical_crossentropy'", "'mse'")
    assert integrity.loss_problem("sparse_categorical_crossentropy", [cell(SOLUTION)]) == ""
    assert integrity.loss_problem("SparseCategoricalCrossentropy", [cell(SOLUTION)]) == ""
    problem = integrity.loss_problem("sparse_categorical_crossentropy", [cell(mse)])
    assert "the answer's source compiles it only with 'mse'" in problem
    # two compile calls: either may be the one reported; a loss from a variable: nothing to hold it against
    assert integrity.loss_problem("sparse_categorical_crossentropy", [cell(mse), cell(SOLUTION, "model+1")]) == ""
    assert integrity.loss_problem("sparse_categorical_crossentropy", [cell(mse.replace("loss='mse'", "loss=LOSS"))]) == ""
    assert integrity.loss_problem("sparse_categorical_crossentropy", [cell("model.compile(**settings)")]) == ""
    as_object = "model.compile(optimizer='adam', loss=tf.keras.losses.SparseCategoricalCrossentropy())"
    assert integrity.loss_problem("SparseCategoricalCrossentropy", [cell(as_object)]) == ""


def test_the_runners_witness_decides_how_a_cell_ended():
    ran = (RunCell("setup", "locked", "x = 1"), RunCell("model", "answer", "raise ValueError()"))
    log = ({"key": "setup", "role": "locked", "status": "error", "error": {"name": "NameError"}},
           {"key": "model", "role": "answer", "status": "ok"})
    witness = (({"key": "setup", "status": "ok"},), ({"key": "model", "status": "error", "error": "ValueError"},))
    fixed, notes = integrity.reconciled(log, witness, ran)
    assert [e["status"] for e in fixed] == ["ok", "error"] and fixed[1]["error"]["name"] == "ValueError"
    assert len(notes) == 2 and "the runner saw it end 'error' (ValueError)" in notes[1]
    assert integrity.sealed_before_answer(witness, ran, {"model"})
    # the log removed: the witness puts the cells back
    fixed, notes = integrity.reconciled((), witness, ran)
    assert [e["key"] for e in fixed] == ["setup", "model"] and "leaves out cell 'setup'" in notes[0]
    # a second record written into the runner's: the worse status counts
    fixed, notes = integrity.reconciled(log, (witness[0], ({"status": "ok"}, {"status": "error", "error": "ValueError"})), ran)
    assert fixed[1]["status"] == "error" and any("2 records where the runner writes one" in note for note in notes)
    # no witness of the locked cell (the run died in it): not sealed
    assert not integrity.sealed_before_answer(((), ()), ran, {"model"})


def test_what_the_export_saw_is_said_in_words():
    notes = integrity.export_notes({"integrity": {"replaced": ["Model.get_compile_config"], "on_answer": ["to_json"], "threads": 2}})
    assert len(notes) == 3 and "Model.get_compile_config" in notes[0] and "to_json" in notes[1] and notes[2].startswith("2 thread(s)")
    assert integrity.export_notes({"integrity": {"replaced": [], "on_answer": [], "threads": 0}}) == ()


def test_a_students_own_witness_cannot_hide_the_error_its_log_records():
    """The answer's witness was open while the answer ran: a record the answer wrote there
    (and the runner's kept out) does not outweigh the error in the runner's log."""
    ran = (RunCell("setup", "locked", "x = 1"), RunCell("model", "answer", "raise ValueError()"))
    log = ({"key": "setup", "role": "locked", "status": "ok"},
           {"key": "model", "role": "answer", "status": "error", "error": {"name": "ValueError"}})
    witness = (({"key": "setup", "status": "ok"},), ({"key": "model", "status": "ok"},))
    fixed, notes = integrity.reconciled(log, witness, ran, {"model"})
    assert fixed[1]["status"] == "error" and "the error counts" in notes[0]
    # before the student's first cell the sealed witness decides alone
    blamed = ({"key": "setup", "role": "locked", "status": "error", "error": {"name": "NameError"}}, log[1])
    fixed, _ = integrity.reconciled(blamed, witness, ran, {"model"})
    assert fixed[0]["status"] == "ok"


def test_an_export_the_watcher_did_not_stop_the_run_for_is_not_believed():
    from grader.grading.artifact import Artifact

    made = Artifact((), {"found": True, "integrity": {}}, "{}", {"loss": "mse"}, "/x/model.weights.h5")
    assert integrity.believed_export(made, "export") == (made, ())
    assert integrity.believed_export(made, "") == (made, ())  # no sandbox, no watcher: the files are all there is
    distrusted, notes = integrity.believed_export(made, "closed")
    assert distrusted.model_json is None and distrusted.weights_path is None and not distrusted.export["found"]
    assert "closed the runner's channel to its watcher" in notes[0] and notes[0] == distrusted.export["problem"]


def test_an_export_through_report_files_the_run_replaced_is_not_believed():
    from grader.grading.artifact import Artifact

    made = Artifact((), {"found": True, "integrity": {}}, "{}", {"loss": "mse"}, "/x/model.weights.h5")
    distrusted, notes = integrity.believed_export(made, "tampered")
    assert distrusted.model_json is None and not distrusted.export["found"]
    assert "pointed the runner's own report files elsewhere" in notes[0]


def test_the_watcher_sees_a_descriptor_pointed_at_another_file(tmp_path):
    """What the watcher compares: the file a process's descriptor names now, by device and
    inode, with the one it was opened on."""
    import os

    from grader.sandbox import inside

    report, other = tmp_path / "report", tmp_path / "other"
    report.write_text(""), other.write_text("")
    fd = os.open(report, os.O_WRONLY)
    try:
        files = {fd: inside._identity(fd)}
        assert inside._replaced(os.getpid(), files) == []
        replacement = os.open(other, os.O_WRONLY)
        os.dup2(replacement, fd)
        os.close(replacement)
        assert inside._replaced(os.getpid(), files) == [fd]
    finally:
        os.close(fd)
    assert inside._replaced(os.getpid(), files) == [fd]  # closed: no longer the report
