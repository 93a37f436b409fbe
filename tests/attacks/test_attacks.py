"""Attacks on the grader, graded in one batch with honest sample submissions.

Each attack is a notebook (built below from its answer cell, or a hostile file) and
asserts two things: the grader contained it (the batch finished, the samples got the
scores they get alone, the host is unchanged) and the attacker's scorecard says what
happened. The samples-alone scores come from the session's `graded` batch; the batch
holds a few of them, of each kind of verdict (full marks, a wrong answer, nothing
written, not a notebook, payloads in the pages), not all of them.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from conftest import INJECTION_NAME, attempt
from grader import batch, cgroups, context, manifest as manifest_mod, rundisk, sandbox, scenarios
from grader.run import Options

pytestmark = pytest.mark.slow
SECRET = "grader-host-secret-4711"
# honest submissions graded among the attacks (names in the session's `submissions`)
SAMPLES = ("solution", "untouched_playground", "no_softmax", "syntax_error", "not_a_notebook")
LIMITS = "[sandbox]\ncell_timeout = 12\nrun_timeout = 120\nmemory_mb = 6144\nmax_processes = 128\n"


def attacks(solution: str, paths: dict) -> dict[str, str]:
    """Answer-cell sources, by attack name. Many end with the lab's solution so that
    only the attack, not a missing model, can cost the attacker points."""
    keras_file = paths["keras_file"]
    return {
        "read_source_notebook": f"print(open({paths['source']!r}).read())",
        "read_release_record": f"print(open({paths['record']!r}).read())",
        "read_other_submission": f"print(open({paths['other']!r}).read())",
        "write_output_dir": f"open({paths['forge']!r}, 'w').write('{{\"score\": 100}}')",
        "forge_result_in_scratch": "import json, os\nfor name in os.listdir('/scratch/out'):\n    print(name)\n"
        "json.dump({'status': 'graded', 'score': 100}, open('/scratch/out/result.json', 'w'))\n"
        "json.dump([{'key': 'model', 'status': 'ok', 'role': 'answer'}], open('/scratch/out/log.json', 'w'))\n" + solution,
        "tcp_connect": f"import socket\nsocket.create_connection(('127.0.0.1', {paths['port']}), timeout=5)",
        "resolve_host_name": "import socket\nsocket.gethostbyname('example.com')",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "allocate_30gb": "block = b'x' * (30 * 2**30)",
        "fill_memory": "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**28)",
        "infinite_loop": "while True:\n    pass",
        "sleep_past_limit": "import time\ntime.sleep(10**6)",
        "ignore_sigterm": "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
        "flood_stdout_1gb": "import os\nline = 'x' * 1023\nfor _ in range(1 << 20):\n    print(line)\nos.write(1, b'y' * (1 << 26))\n" + solution,
        "write_10gb_file": "with open('/scratch/big', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(bytes(1 << 20))",
        "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n" + solution,
        "exit_mid_cell": "import os\nos._exit(0)",
        "read_proc_and_environment": "import os\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(open('/proc/1/environ').read())\nprint(dict(os.environ))\nprint(open('/proc/1/cmdline').read())",
        "poison_weights_cache": f"open('/keras/models/{keras_file}', 'wb').write(b'poison')",
        "monkeypatch_fit_and_evaluate": solution.replace("optimizer='adam'", "optimizer=tf.keras.optimizers.Adam(learning_rate=0.0)")
        + "\nimport keras\nkeras.Model.evaluate = lambda self, *a, **k: [0.0, 1.0]\nkeras.Model.fit = lambda self, *a, **k: None\ntf.keras.Model.evaluate = keras.Model.evaluate",
        "lambda_layer": solution.replace("tf.keras.layers.Flatten(),", "tf.keras.layers.Lambda(lambda x: tf.reshape(x, [-1, 11520])),"),
        "custom_layer_class": "class Sneaky(tf.keras.layers.Layer):\n    def call(self, x):\n        return tf.reshape(x, [-1, 11520])\n\n"
        + solution.replace("tf.keras.layers.Flatten(),", "Sneaky(),"),
        "handwritten_artifact": solution + "\nimport json, os\nmodel.save_weights('/scratch/out/model.weights.h5')\n"
        "open('/scratch/out/model.json', 'w').write(model.to_json())\n"
        "json.dump({'found': True, 'val_accuracy': 1.0, 'accuracy': 1.0}, open('/scratch/out/export.json', 'w'))\n"
        "json.dump([{'key': 'model', 'role': 'answer', 'status': 'ok', 'stdout': 'val_accuracy: 1.0'}], open('/scratch/out/log.json', 'w'))\n"
        "json.dump(model.get_compile_config(), open('/scratch/out/compile.json', 'w'))\nos._exit(0)",
        "fifo_as_progress": "import os, time\nos.remove('/scratch/out/progress')\nos.mkfifo('/scratch/out/progress')\ntime.sleep(10**6)",
        "out_folder_links_to_host": f"import os\nos.rename('/scratch/out', '/scratch/moved')\nos.symlink({paths['host_folder']!r}, '/scratch/out')\n" + solution,
        # the export writes the model through the link (to /tmp inside); the grader, outside,
        # would read the host's /tmp/model.json if it followed it
        "model_json_is_a_link": solution + "\nimport os\nos.symlink('/tmp/model.json', '/scratch/out/model.json')",
        "nested_3000_folders": "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nos.chdir('/scratch')\n" + solution,
        "create_400k_files": "for i in range(400_000):\n    open(f'/scratch/f{i}', 'w').close()",
        "read_mount_table": "print(open('/proc/self/mountinfo').read())\n" + solution,
        # the run's own files, written by the answer, which then ends the run before the export
        "weights_declare_1gib": solution + "\nimport h5py\nmodel.save_weights('/scratch/out/model.weights.h5')\n"
        "with h5py.File('/scratch/out/model.weights.h5', 'a') as f:\n"
        "    f.create_dataset('layers/dense/vars/9', shape=(2**28,), dtype='float32', fillvalue=1.0)\n" + HANDWRITTEN.format(config="model.to_json()", compile="model.get_compile_config()"),
        "huge_head_without_weights": solution + "\nbig = tf.keras.Sequential([pretrained_model, tf.keras.layers.Flatten(), tf.keras.layers.Dense(16384), "
        "tf.keras.layers.Dense(5, activation='softmax')])\n" + HANDWRITTEN.format(config="big.to_json()", compile="model.get_compile_config()"),
        "activation_is_a_layer": solution + "\nimport json\nmodel.save_weights('/scratch/out/model.weights.h5')\nconfig = json.loads(model.to_json())\n"
        "config['config']['layers'][-1]['config']['activation'] = " + repr(LAMBDA) + "\n" + HANDWRITTEN.format(config="json.dumps(config)", compile="model.get_compile_config()"),
        "optimizer_holds_a_layer": solution + "\nmodel.save_weights('/scratch/out/model.weights.h5')\ncompiled = model.get_compile_config()\n"
        "compiled['optimizer']['config']['learning_rate'] = " + repr(LAMBDA) + "\n" + HANDWRITTEN.format(config="model.to_json()", compile="compiled"),
    }


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "x", "function": "print"}, "registered_name": None}
HANDWRITTEN = """import json, os
open('/scratch/out/model.json', 'w').write({config})
json.dump({compile}, open('/scratch/out/compile.json', 'w'))
json.dump({{'found': True}}, open('/scratch/out/export.json', 'w'))
os._exit(0)"""


# What each attacker's scorecard must say (a fragment of a check's message or the reason).
SAYS = {
    "read_source_notebook": "FileNotFoundError",
    "read_release_record": "FileNotFoundError",
    "read_other_submission": "FileNotFoundError",
    "write_output_dir": "FileNotFoundError",
    "tcp_connect": "ConnectionRefusedError",
    "resolve_host_name": "gaierror",
    "fork_bomb": "more than 128 processes",
    "allocate_30gb": "MemoryError",
    # its own memory limit, or, when the host is short of memory (both test workers grading),
    # the CPU limit: the kernel's reclaim is charged to the bomb's CPU time. Either costs only
    # its own points; the limit itself is pinned in tests/test_sandbox.py.
    "fill_memory": ("memory limit (6 GiB) was reached", "used more than 12 s of CPU time"),
    "infinite_loop": "used more than 12 s of CPU time",
    "sleep_past_limit": "waited more than 12 s without computing",
    "ignore_sigterm": "used more than 12 s of CPU time",
    "write_10gb_file": "File too large",
    "exit_mid_cell": "the run ended in the middle of the answer cell",
    "poison_weights_cache": "Read-only file system",
    "monkeypatch_fit_and_evaluate": "learning rate is 0.0",
    "lambda_layer": "uses Lambda",
    "custom_layer_class": "uses Sneaky",
    "outputs_200mb": "over the 100 MiB limit",
    "nested_10000_levels": "nested too deeply",
    "invalid_utf8": "not UTF-8",
    "fifo_as_progress": "waited more than 12 s without computing",
    "out_folder_links_to_host": "/scratch/out is a link or not a folder",
    "model_json_is_a_link": "/scratch/out/model.json is a link",
    "create_400k_files": "filled its disk",
    "weights_declare_1gib": "none of the model's variables",
    "huge_head_without_weights": "more than the",
    "activation_is_a_layer": "uses Lambda",
    "optimizer_holds_a_layer": "compile settings uses Lambda",
}
# Notebooks named like the grader's own files, and one a spreadsheet would run.
NAMES = ("gradebook.sqlite", "index.html", "grades.csv", "exports", ".grader", '=HYPERLINK("http:x","y")')
XSS = "1 src=x onerror=alert(document.domain)//"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="  # 1x1
FORGED_BY_HOST = "forged-log-in-a-host-folder-0815"
WORKER_RSS_BOUND_MB = 3072
PARENT_RSS_BOUND_MB = 1024


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(runs: str) -> dict:
    """What the batch's runs left behind, found by their own marks (their folders live in
    `runs`, their cgroups carry its tag), not by what else runs on this machine."""
    tag = cgroups.PREFIX + sandbox.cgroup_tag(runs) + "-"
    groups = [os.path.join(parent, name) for parent in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{k}" for k in ("pids", "memory", "cpuacct", "unified")))
              if os.path.isdir(parent) for name in os.listdir(parent) if name.startswith(tag)]
    processes = subprocess.run(["pgrep", "-f", re.escape(runs)], capture_output=True, text=True).stdout.split()
    return {"folders": sorted(n for n in os.listdir(runs) if n.startswith(sandbox.RUN_PREFIX)), "mounts": rundisk.mounts_under(runs),
            "cgroups": groups, "processes": [p for p in processes if int(p) != os.getpid()]}


@pytest.fixture(scope="module")
def attacked(manifest, released, submissions, tmp_path_factory):
    record, playground = released
    work = tmp_path_factory.mktemp("attacks")
    assignment = work / "assignment"
    shutil.copytree(manifest.directory, assignment)
    toml = (assignment / "assignment.toml").read_text()
    (assignment / "assignment.toml").write_text(toml[: toml.index("[sandbox]")] + LIMITS + toml[toml.index("[[checks]]"):])
    out = work / "out"
    folder = work / "submissions"
    folder.mkdir()
    for name in (*SAMPLES, INJECTION_NAME):
        shutil.copy(submissions / f"{name}.ipynb", folder / f"{name}.ipynb")

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    connections = []
    threading.Thread(target=lambda: connections.append(listener.accept()), daemon=True).start()

    solution = next(c.source for c in record.cells if c.key == "model")
    host_folder = work / "host_folder"  # a host folder holding a log.json, for a link to point at
    host_folder.mkdir()
    (host_folder / "log.json").write_text(json.dumps([{"key": "model", "role": "answer", "status": "ok", "stdout": FORGED_BY_HOST}]))
    paths = {"source": os.path.join(manifest.directory, "source.ipynb"), "record": str(out / ".grader" / "solution.ipynb"),
             "other": str(folder / "solution.ipynb"), "forge": str(out / "submissions" / "solution" / "solution" / "result.json"), "port": listener.getsockname()[1],
             "host_folder": str(host_folder), "keras_file": manifest.lab.base.file_name(96)}
    for name, source in attacks(solution, paths).items():
        (folder / f"attack_{name}.ipynb").write_bytes(scenarios.with_answer(playground, "model", source))
    big = nbjson_with_output(playground, 200 * 2**20)
    (folder / "attack_outputs_200mb.ipynb").write_bytes(big)
    (folder / "attack_nested_10000_levels.ipynb").write_bytes(b'{"cells": ' + b"[" * 10000 + b"]" * 10000 + b"}")
    (folder / "attack_invalid_utf8.ipynb").write_bytes(b'{"cells": [], "x": "\xff\xfe\xfa"}')
    (folder / "..ipynb").write_bytes(scenarios.solution(playground, "model", solution))
    (folder / "..%2F..%2Fescape.ipynb").write_bytes(scenarios.solution(playground, "model", solution))
    for name in NAMES:
        (folder / f"{name}.ipynb").write_bytes(scenarios.solution(playground, "model", solution))
    (folder / "attack_image_width_xss.ipynb").write_bytes(with_output(playground, solution, {"image/png": PNG, "text/plain": "<Figure>"}, {"image/png": {"width": XSS}}))
    (folder / "attack_60000_markdown_cells.ipynb").write_bytes(with_markdown(playground, solution, ["note %d" % n for n in range(60_000)]))
    (folder / "attack_quadratic_markdown.ipynb").write_bytes(with_markdown(playground, solution, ["![" * 24_000]))
    twin = work / "elsewhere"
    twin.mkdir()
    (twin / "solution.ipynb").write_bytes(scenarios.solution(playground, "model", solution).replace(b"model.summary()", b"model.summary()  # twin"))

    staged = os.path.join(str(out), ".grader", "keras", "models", manifest.lab.base.file_name(96))
    runs = work / "runs"  # the batch's temporary folder: its runs' folders, and the mark of their cgroups
    runs.mkdir()
    before = {"assignment": {p: sha(os.path.join(manifest.directory, p)) for p in os.listdir(manifest.directory)},
              "work": sorted(os.listdir(work)), "parent": sorted(os.listdir(os.path.dirname(str(work))))}
    os.environ["GRADER_TEST_SECRET"] = SECRET
    os.environ["TMPDIR"], tempfile.tempdir = str(runs), None  # the workers are spawned: they read TMPDIR
    try:
        graded = batch.grade(
            manifest_mod.load(str(assignment)), [str(folder), str(twin)],
            Options(out_dir=str(out), quiet=True, jobs=2, cache_dir=str(work / "cache")),
        )
    finally:
        os.environ.pop("GRADER_TEST_SECRET")
        os.environ.pop("TMPDIR")
        tempfile.tempdir = None
        listener.close()
    after = {"assignment": {p: sha(os.path.join(manifest.directory, p)) for p in os.listdir(manifest.directory)},
             "work": sorted(os.listdir(work)), "parent": sorted(os.listdir(os.path.dirname(str(work)))),
             "leftovers": leftovers(str(runs))}
    return {r.submission: r for r in graded.results}, out, before, after, connections, staged, context.weights_for(manifest, None), graded.view


def with_output(playground, solution, data, metadata) -> bytes:
    import nbformat

    notebook = nbformat.reads(scenarios.solution(playground, "model", solution).decode(), 4)
    cell = next(c for c in notebook.cells if c.get("id") == "model")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)]
    return nbformat.writes(notebook).encode()


def with_markdown(playground, solution, texts) -> bytes:
    import nbformat

    notebook = nbformat.reads(scenarios.solution(playground, "model", solution).decode(), 4)
    notebook.cells += [nbformat.v4.new_markdown_cell(text) for text in texts]
    return nbformat.writes(notebook).encode()


def nbjson_with_output(playground, size: int) -> bytes:
    import nbformat

    notebook = nbformat.from_dict(playground)
    cell = next(c for c in notebook.cells if c.get("id") == "model")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="z" * size)]
    return nbformat.writes(notebook).encode()


def said(result) -> str:
    return " | ".join([result.reason] + [c.message for c in result.checks])


def test_the_batch_finished_and_every_attack_has_a_scorecard(attacked):
    results, out = attacked[0], attacked[1]
    for name in [*SAYS, "flood_stdout_1gb", "kill_parent", "read_proc_and_environment", "handwritten_artifact", "forge_result_in_scratch",
                 "nested_3000_folders", "read_mount_table"]:
        assert os.path.isfile(os.path.join(attempt(out, f"attack_{name}"), "scorecard.html")), name
        assert os.path.isfile(os.path.join(attempt(out, f"attack_{name}"), "result.json")), name


@pytest.mark.parametrize("name", sorted(SAYS))
def test_the_attackers_scorecard_says_what_happened(attacked, name):
    result = attacked[0][f"attack_{name}"]
    expected = SAYS[name] if isinstance(SAYS[name], tuple) else (SAYS[name],)
    assert any(text in said(result) for text in expected), said(result)
    assert result.score < result.max_score


def test_samples_get_exactly_the_scores_they_get_alone(attacked, graded):
    mixed, alone = attacked[0], graded[0]
    for name in (*SAMPLES, INJECTION_NAME):
        result = alone[name]
        assert mixed[name].score == result.score, name
        assert [c.status for c in mixed[name].checks] == [c.status for c in result.checks], name


def test_the_host_is_unchanged(attacked):
    results, out, before, after, connections, staged, demo, _ = attacked
    assert before["assignment"] == after["assignment"]  # nothing written into the assignment
    assert set(after["work"]) - set(before["work"]) <= {"cache", "out"} and set(after["parent"]) == set(before["parent"])
    # every run's folder, mount, cgroup and process is gone (found by the batch's own marks)
    assert after["leftovers"] == {"folders": [], "mounts": [], "cgroups": [], "processes": []}
    assert sha(staged) == sha(demo.path)  # the weights cache is not poisoned
    assert connections == []  # the listener on 127.0.0.1 was never reached
    forged = json.load(open(out / "submissions" / "solution" / "solution" / "result.json"))
    assert forged.get("submission") == "solution" and forged["score"] == results["solution"].score


def test_forged_files_in_the_run_count_for_nothing(attacked):
    results = attacked[0]
    forged = results["attack_forge_result_in_scratch"]
    assert forged.score == results["solution"].score  # it also wrote the solution: no more, no less
    artifact = results["attack_handwritten_artifact"]
    assert artifact.training["val_accuracy"] == results["solution"].training["val_accuracy"]
    assert "1.000" not in said(artifact)


def test_no_host_secret_or_other_process_is_visible(attacked):
    result = attacked[0]["attack_read_proc_and_environment"]
    text = json.dumps(result.to_json())
    assert SECRET not in text
    cell = next(c for c in result.cells if c["key"] == "model")
    pids = json.loads(cell["stdout"].splitlines()[0].replace("'", '"'))
    assert len(pids) <= 3  # the sandbox's own init and runner, nothing of the host


def test_stdout_flood_is_cut_and_the_rest_still_graded(attacked):
    result = attacked[0]["attack_flood_stdout_1gb"]
    cell = next(c for c in result.cells if c["key"] == "model")
    assert "characters cut" in cell["stdout"] and len(cell["stdout"]) < 200_000
    assert result.score == result.max_score


def test_kill_parent_is_contained(attacked):
    result = attacked[0]["attack_kill_parent"]
    assert result.status == "graded"


def test_names_of_the_graders_own_files_are_just_students(attacked):
    results, out, view = attacked[0], attacked[1], attacked[7]
    for name in NAMES:
        if name.startswith("."):  # hidden, like an editor's checkpoints: not a submission, and no harm to .grader/
            assert name not in results, name
            continue
        assert results[name].score == results["solution"].score, name
    assert os.path.isfile(out / "gradebook.sqlite") and os.path.isfile(out / "index.html") and os.path.isfile(out / "grades.csv")
    assert os.path.isdir(out / ".grader") and not os.path.exists(out / "exports" / "scorecard.html")
    lines = open(out / "grades.csv", encoding="utf-8").read().splitlines()
    assert any(line.startswith('"\'=HYPERLINK(') for line in lines) and not any(line.startswith(("=", '"=')) for line in lines)


def test_notebook_pages_have_no_live_markup_and_a_budget(attacked):
    from test_reports import parse

    out = attacked[1]
    page = parse(os.path.join(attempt(out, "attack_image_width_xss"), "notebook.html"))
    assert page.handlers == [] and page.scripts == []
    assert "onerror" not in open(os.path.join(attempt(out, "attack_image_width_xss"), "notebook.html")).read()
    for name in ("attack_60000_markdown_cells", "attack_quadratic_markdown"):
        text = open(os.path.join(attempt(out, name), "notebook.html")).read()
        assert "plain text" in text, name  # over the rendering budget: shown as text, with a note
        assert attacked[0][name].score == attacked[0]["solution"].score


def test_the_graders_own_memory_stays_bounded(attacked):
    facts = json.load(open(attacked[1] / ".grader" / "batch.json"))
    # Each grading worker holds TensorFlow, the reference base, the feature cache, the last
    # two rebuilt models and what it trains; the bound is what that needs at the demo's size
    # with room to spare (a weights bomb or a huge head would each have cost gigabytes).
    assert 0 < facts["worker_peak_rss_mb"] < WORKER_RSS_BOUND_MB, facts
    assert facts["parent_peak_rss_mb"] < PARENT_RSS_BOUND_MB, facts


def test_path_tricks_and_twins_stay_inside_the_output_folder(attacked):
    results, out, view = attacked[0], attacked[1], attacked[7]
    twins = next(row for row in view.rows if row.student == "solution")
    assert len(twins.attempts) == 2 and all(a.result is not None for a in twins.attempts)  # same name twice: both graded
    assert sum(a.counts for a in twins.attempts) == 1 and {a.result.score for a in twins.attempts} == {results["solution"].score}
    for row in view.rows:
        for graded_attempt in row.attempts:
            folder = os.path.realpath(out / graded_attempt.folder)
            assert folder.startswith(os.path.realpath(out / "submissions") + os.sep) and os.path.isdir(folder), graded_attempt.folder


def test_links_out_of_the_run_are_not_followed(attacked):
    results = attacked[0]
    for name in ("out_folder_links_to_host", "model_json_is_a_link"):
        assert FORGED_BY_HOST not in json.dumps(results[f"attack_{name}"].to_json()), name


def test_a_deep_tree_in_scratch_costs_nothing(attacked):
    results = attacked[0]
    assert results["attack_nested_3000_folders"].score == results["solution"].score


def test_the_mount_table_shows_no_host_path(attacked):
    results, out = attacked[0], attacked[1]
    cell = next(c for c in results["attack_read_mount_table"].cells if c["key"] == "model")
    table = cell["stdout"]
    assert " /venv " in table and " /scratch " in table  # it is the table
    if rundisk.problem() is not None:
        pytest.skip(f"no neutral views without the right to mount: {rundisk.problem()}")
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for host in (checkout, str(out), sys.prefix, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), sandbox.RUN_PREFIX, "/tmp/"):
        assert host not in table, host
