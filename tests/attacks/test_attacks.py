"""Attacks on the grader, graded in one batch with honest sample submissions.

Each attack is a notebook (built below from its answer cell, or a hostile file) and
asserts two things: the grader contained it (the batch finished, the samples got the
scores they get alone, the host is unchanged) and the attacker's scorecard says what
happened. The samples-alone scores come from a batch of the samples alone (this file
does not wait for the session's `graded` batch, so it runs on a worker of its own); the
attack batch holds a few of them, of each kind of verdict (full marks, a wrong answer, nothing
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

import inspect

import pytest

from attacks import bombs
from conftest import INJECTION_NAME, attempt, missing_capability
from grader import batch, context, sandbox
from grader.config import manifest as manifest_mod, scenarios
from grader.run import Options
from grader.sandbox import cgroups, rundisk

pytestmark = pytest.mark.slow
SECRET = "grader-host-secret-4711"
# honest submissions graded among the attacks (names in the session's `submissions`)
SAMPLES = ("solution", "untouched_playground", "no_softmax", "syntax_error", "not_a_notebook")
LIMITS = ("[sandbox]\ncell_timeout = 12\nrun_timeout = 120\nmemory_mb = 6144\nmax_processes = 128\n"
          "[grader]\nwork_cpu_seconds = 15\n")  # the grader's own work: the honest samples use a few seconds each


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
        "handwritten_artifact": solution + "\nmodel.save_weights('/scratch/out/model.weights.h5')\n" + FORGE
        + "forge({'model.json': model.to_json(), 'compile.json': json.dumps(model.get_compile_config()),\n"
        "       'export.json': json.dumps({'found': True, 'val_accuracy': 1.0, 'accuracy': 1.0}),\n"
        "       'log.json': json.dumps([{'key': 'model', 'role': 'answer', 'status': 'ok', 'stdout': 'val_accuracy: 1.0'}]),\n"
        "       'model.weights.h5': open('/scratch/out/model.weights.h5', 'rb').read()})",
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
        **third_round(solution),
    }


def third_round(solution: str) -> dict[str, str]:
    """The third round's attacks (the issue "Third round of attacks")."""
    mse = solution.replace("loss='sparse_categorical_crossentropy'", "loss='mse'")
    relu = solution.replace("activation='softmax'", "activation='relu'")
    bombs_source = inspect.getsource(bombs)
    def bombed(make, options=""):
        return ("\nmodel.save_weights('/tmp/plain.weights.h5')\n" + bombs_source + f"\n{make}('/tmp/plain.weights.h5', '/scratch/out/model.weights.h5'{options})\n"
                + HANDWRITTEN.format(config="model.to_json()", compile="model.get_compile_config()"))
    epochs_zero = "import os\nos.environ['FLOWERS_EPOCHS'] = '0'  # the lab's own training cell then costs the run nothing\n"
    resized = (epochs_zero + "pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)\n"
               "big = tf.keras.applications.MobileNetV2(input_shape=[{size}, {size}, 3], include_top=False, weights=None)\n"
               "big.set_weights(pretrained_model.get_weights())\nbig.trainable = {trainable}\n"
               "model = tf.keras.Sequential([tf.keras.Input([*IMAGE_SIZE, 3]), tf.keras.layers.Resizing({size}, {size}), big,\n"
               "    tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(5, activation='softmax')])\n"
               "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])")
    locate = ("import os\ndef descriptor(name):\n    for fd in os.listdir('/proc/self/fd'):\n        try:\n"
              "            if os.readlink(f'/proc/self/fd/{fd}').endswith(name):\n                return int(fd)\n"
              "        except OSError:\n            pass\n")
    return {
        # 1. one student sets another's grade: hold a lock on every file a run may read
        "lock_weights_and_data": "import fcntl, glob, time\nheld = []\nfor path in glob.glob('/keras/models/*') + glob.glob('/data/*'):\n"
        "    handle = open(path, 'rb')\n    fcntl.flock(handle, fcntl.LOCK_EX)\n    held.append(handle)\n"
        "started = time.process_time()\nwhile time.process_time() - started < 6:\n    pass\n" + solution,
        # 2. trained weights smuggled in as initializers: a head fitted to the validation images, learning rate 0
        "constant_head_fitted_to_validation": SMUGGLED,
        # 3. the grader's own work: bombs in the weights file, a model that computes too much
        "weights_chunks_larger_than_arrays": solution + bombed("chunk_bomb", ", 2**23, 1"),
        "weights_deflated_twice": solution + bombed("chunk_bomb", ", 2**12, 2"),
        "weights_link_maze": solution + bombed("link_maze", ", 24"),
        "weights_group_linked_into_itself": solution + bombed("self_linked"),
        "resizing_640_before_a_640px_base": resized.format(size=640, trainable=False),
        "unfrozen_base_past_the_cpu_budget": resized.format(size=96, trainable=True),
        # 5. the export: patched Keras methods, the runner's export rewritten, a thread, a forged log
        "patched_get_compile_config": mse + "\nconfig = model.get_compile_config()\nconfig['loss'] = 'sparse_categorical_crossentropy'\n"
        "tf.keras.Model.get_compile_config = lambda self: config",
        "patched_to_json": relu + "\nforged = model.to_json().replace('\"relu\"', '\"softmax\"')\ntf.keras.Model.to_json = lambda self, **kw: forged",
        "to_json_set_on_the_model": relu + "\nforged = model.to_json().replace('\"relu\"', '\"softmax\"')\nmodel.to_json = lambda **kw: forged",
        "runner_export_rewritten_through_gc": mse + "\nimport gc, types\nfor thing in gc.get_objects():\n"
        "    if isinstance(thing, types.FunctionType) and thing.__name__ in ('export_model', 'export_apart'):\n"
        "        thing.__code__ = (lambda *args, **kwargs: None).__code__",
        "thread_rewrites_compile_json": mse + "\n" + locate + "import json, threading\n"
        "forged = json.dumps(dict(model.get_compile_config(), loss='sparse_categorical_crossentropy')).encode()\n"
        "def rewrite():\n    fd = descriptor('compile.json')\n    while True:\n        os.ftruncate(fd, 0)\n        os.pwrite(fd, forged, 0)\n"
        "threading.Thread(target=rewrite, daemon=True).start()",
        "forged_log_blames_a_locked_cell": solution + "\n" + locate + "import json, threading\n"
        "forged = json.dumps([{'key': 'imports', 'role': 'locked', 'status': 'error', 'error': {'name': 'NameError', 'message': 'x'}}]).encode()\n"
        "def rewrite():\n    fd = descriptor('log.json')\n    while True:\n        os.ftruncate(fd, 0)\n        os.pwrite(fd, forged, 0)\n"
        "threading.Thread(target=rewrite, daemon=True).start()\nraise ValueError('the error the forged log hides')",
    }


# A head fitted, in the run, to the validation images (least squares on the base's features),
# given to Keras as Constant initializers, with a learning rate of 0 so that no training moves it.
SMUGGLED = """pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)
pretrained_model.trainable = False
images, labels = [], []
for image, label in validation_dataset.unbatch().take(2000):
    images.append(image.numpy())
    labels.append(int(label))
features = pretrained_model.predict(np.stack(images), verbose=0).reshape(len(images), -1)
inputs = np.concatenate([features, np.ones((len(images), 1))], axis=1)
fitted = np.linalg.lstsq(inputs, np.eye(5)[labels] * 20.0 - 10.0, rcond=None)[0]
model = tf.keras.Sequential([pretrained_model, tf.keras.layers.Flatten(), tf.keras.layers.Dense(5, activation='softmax',
    kernel_initializer=tf.keras.initializers.Constant(fitted[:-1].tolist()), bias_initializer=tf.keras.initializers.Constant(fitted[-1].tolist()))])
model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.0), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
print('the head on the validation images:', float((model.predict(np.stack(images), verbose=0).argmax(-1) == np.array(labels)).mean()))"""


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "x", "function": "print"}, "registered_name": None}
# The run's reports go through descriptors the runner opened before the cells, to files the
# run cannot see by any path. A run that wants the grader to read a file of its own making
# must write it through those descriptors, from a process of its own, and tell the watcher
# outside that this process is the export (so that its own writes are not stopped): the
# remaining way to forge a report (SECURITY.md), which these attacks use to put hostile files
# before the grader's checks.
FORGE = """
import json, os, time
def forge(files):
    found = {}
    for fd in os.listdir('/proc/self/fd'):
        try:
            found[int(fd)] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            pass
    named = {target.rsplit('/', 1)[-1]: fd for fd, target in found.items()}
    writer = os.fork()
    if writer == 0:
        # as the runner's own export does: announced first, written once the watcher has
        # stopped every other process of the run (the parent among them)
        waited = time.monotonic()
        while time.monotonic() - waited < 60:
            with open(f'/proc/{os.getppid()}/stat') as stat:
                if stat.read().rsplit(')', 1)[-1].split()[0] in ('T', 't'):
                    break
            time.sleep(0.01)
        for name, data in files.items():
            os.ftruncate(named[name], 0)
            os.pwrite(named[name], data if isinstance(data, bytes) else data.encode(), 0)
        os._exit(0)
    for fd, target in found.items():
        if target.startswith('pipe:'):
            try:
                os.write(fd, f'{writer}\\n'.encode())
            except OSError:
                pass
    os.waitpid(writer, 0)
    time.sleep(30)
"""
HANDWRITTEN = FORGE.replace("{", "{{").replace("}", "}}") + """weights = '/scratch/out/model.weights.h5'
forge({{'model.json': {config}, 'compile.json': json.dumps({compile}), 'export.json': json.dumps({{'found': True}}),
        **({{'model.weights.h5': open(weights, 'rb').read()}} if os.path.exists(weights) else {{}})}})"""


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
    "poison_weights_cache": ("Read-only file system", "Permission denied"),
    "monkeypatch_fit_and_evaluate": "learning rate is 0.0",
    "lambda_layer": "uses Lambda",
    "custom_layer_class": "uses Sneaky",
    "outputs_200mb": "over the 100 MiB limit",
    "nested_10000_levels": "nested too deeply",
    "invalid_utf8": "not UTF-8",
    "fifo_as_progress": "waited more than 12 s without computing",
    "create_400k_files": "filled its disk",
    "weights_declare_1gib": "none of the model's variables",
    "huge_head_without_weights": "more than the",
    "activation_is_a_layer": "uses Lambda",
    "optimizer_holds_a_layer": "compile settings uses Lambda",
    "constant_head_fitted_to_validation": "learning rate is 0.0",
    "weights_chunks_larger_than_arrays": "more than the array itself holds",
    "weights_deflated_twice": "compressed more than once",
    "weights_link_maze": "a second time through another link",
    "weights_group_linked_into_itself": "a second time through another link",
    "resizing_640_before_a_640px_base": "GFLOPs per image, more than the",
    "unfrozen_base_past_the_cpu_budget": "used more than its budget of 15 s of CPU time",
    "patched_get_compile_config": "is not a cross-entropy",
    "patched_to_json": "relu",
    "to_json_set_on_the_model": "relu",
    "runner_export_rewritten_through_gc": "is not a cross-entropy",
    "thread_rewrites_compile_json": "is not a cross-entropy",
    "forged_log_blames_a_locked_cell": "raised ValueError",
}
# Attacks whose run ends as the solution's does: what they tried counts for nothing, not even against them.
HARMLESS = ("lock_weights_and_data", "out_folder_links_to_host", "model_json_is_a_link", "forge_result_in_scratch")
# Attacks the scorecard and the class report mark for the instructor, and a fragment of what they say.
REVIEWED = {
    "patched_get_compile_config": "replaces a method of Keras or of the model (get_compile_config)",
    "patched_to_json": "Model.to_json",
    "to_json_set_on_the_model": "set methods on the model itself (to_json)",
    "runner_export_rewritten_through_gc": "the garbage collector",
    "thread_rewrites_compile_json": "thread(s) the run started were still running",
    "forged_log_blames_a_locked_cell": "cell 'model', which the runner saw end (error)",
    "weights_link_maze": "was not written by the runner's export",
    "handwritten_artifact": "works on file descriptors or processes directly",
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


@pytest.fixture(scope="module")
def alone(manifest, submissions, attacked, tmp_path_factory):
    """The honest samples graded by themselves, in a batch of their own (the features the
    attack batch cached are used again)."""
    work = tmp_path_factory.mktemp("alone")
    folder = work / "submissions"
    folder.mkdir()
    for name in (*SAMPLES, INJECTION_NAME):
        shutil.copy(submissions / f"{name}.ipynb", folder / f"{name}.ipynb")
    cache = os.path.join(os.path.dirname(str(attacked[1])), "cache")
    graded = batch.grade(manifest, [str(folder)], Options(out_dir=str(work / "out"), quiet=True, cache_dir=cache))
    return {r.submission: r for r in graded.results}


def test_samples_get_exactly_the_scores_they_get_alone(attacked, alone):
    mixed = attacked[0]
    assert set(alone) == {*SAMPLES, INJECTION_NAME}
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
    artifact = results["attack_handwritten_artifact"]  # its own report, through the runner's descriptors
    assert artifact.training["val_accuracy"] == results["solution"].training["val_accuracy"]
    accuracy = {r: next(c.message for c in results[r].checks if c.id == "accuracy") for r in ("attack_handwritten_artifact", "solution")}
    assert accuracy["attack_handwritten_artifact"] == accuracy["solution"]  # the grader's own figures, not the export's 1.0
    assert not any("val_accuracy: 1.0" in str(cell.get("stdout", "")) for cell in artifact.cells)  # nor its forged log
    assert "the run ended in the middle of the answer cell" in said(artifact)


def test_what_could_not_hurt_scores_as_the_solution(attacked):
    """A lock held on every file a run reads, links and files left where the grader once
    read: the run beside it, the attacker and the grader go on as if nothing happened."""
    results = attacked[0]
    for name in HARMLESS:
        assert results[f"attack_{name}"].score == results["solution"].score, (name, said(results[f"attack_{name}"]))


def test_a_head_smuggled_in_as_initializers_trains_from_the_graders_values(attacked):
    results = attacked[0]
    smuggled, solution = results["attack_constant_head_fitted_to_validation"], results["solution"]
    cell = next(c for c in smuggled.cells if c["key"] == "model")
    assert "the head on the validation images: 1.0" in cell["stdout"]  # what it had fitted, in its own run
    assert smuggled.training["val_accuracy"] < solution.training["val_accuracy"]
    assert "replaced by the layers' own seeded initialisation" in smuggled.provenance["training"]
    assert smuggled.score < solution.score


def test_the_graders_work_has_a_budget_and_going_over_it_is_the_students_stored_verdict(attacked):
    results, out = attacked[0], attacked[1]
    from grader.store import gradebook

    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:
        stored = {row[0] for row in book.connection.execute("SELECT result FROM results")}
    finally:
        book.close()
    stored = {json.loads(text)["sha256"] for text in stored}
    for name in ("weights_chunks_larger_than_arrays", "weights_deflated_twice", "weights_link_maze", "weights_group_linked_into_itself",
                 "resizing_640_before_a_640px_base", "unfrozen_base_past_the_cpu_budget"):
        result = results[f"attack_{name}"]
        assert result.status == "graded" and not result.provenance.get("grader_error") and result.sha256 in stored, name
    for name in ("weights_chunks_larger_than_arrays", "weights_deflated_twice", "weights_link_maze", "weights_group_linked_into_itself",
                 "resizing_640_before_a_640px_base"):  # refused from what the file and the config declare, before any work
        assert results[f"attack_{name}"].provenance["grader_cpu_seconds"] < 15, name
    over = results["attack_unfrozen_base_past_the_cpu_budget"]
    assert over.provenance["grader_cpu_seconds"] >= 15 and "15 s of CPU time" in over.provenance["over_budget"]


def test_answers_that_reach_into_the_runner_are_marked_for_review(attacked):
    results, out = attacked[0], attacked[1]
    for name, fragment in REVIEWED.items():
        assert any(fragment in note for note in results[f"attack_{name}"].review), (name, results[f"attack_{name}"].review)
    for name in SAMPLES:
        assert results[name].review == (), (name, results[name].review)
    page = open(out / "index.html", encoding="utf-8").read()
    listed = page[page.index('<ul id="review">'):]
    listed = listed[: listed.index("</ul>")]
    assert all(f"attack_{name}" in listed for name in REVIEWED) and "solution/" not in listed
    card = open(os.path.join(attempt(out, "attack_patched_get_compile_config"), "scorecard.html"), encoding="utf-8").read()
    assert 'id="review"' in card and "get_compile_config" in card


def test_a_forged_log_cannot_blame_the_assignment(attacked):
    """Its log says a locked cell failed (which would make it the grader's fault, tried again
    and never stored): the runner's witness of that cell, sealed before the answer ran, says
    otherwise, and the error the log hid counts."""
    result = attacked[0]["attack_forged_log_blames_a_locked_cell"]
    assert result.status == "graded" and not result.provenance.get("grader_error")
    runs = next(c for c in result.checks if c.id == "runs")
    assert runs.status == "failed" and "ValueError" in runs.message
    assert result.score == attacked[0]["solution"].score - runs.max_score


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
    # the parent's growth during the batch: this test process may have held TensorFlow and
    # models from other tests before it, which are not the batch's
    assert 0 < facts["worker_peak_rss_mb"] < WORKER_RSS_BOUND_MB, facts
    assert facts["parent_growth_mb"] is not None and 0 <= facts["parent_growth_mb"] < PARENT_RSS_BOUND_MB, facts


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
        missing_capability(f"no neutral views without the right to mount: {rundisk.problem()}")
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for host in (checkout, str(out), sys.prefix, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), sandbox.RUN_PREFIX, "/tmp/"):
        assert host not in table, host
