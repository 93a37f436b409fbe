"""Grade inside Gradescope: an autograder bundle, and what it runs for each submission.

Gradescope reads only the file its own `run_autograder` writes inside its container:
`/autograder/results/results.json`. `bundle` writes the zip an instructor uploads as
the assignment's autograder:

    setup.sh         installs bubblewrap and the grader (with TensorFlow) into /autograder/venv
    run_autograder   grades the notebook in /autograder/submission and writes results.json
    project/         this grader's source, installed by setup.sh
    assignment/      the assignment (manifest, source notebook, its lab module, its data and weights if not the demo's)
    state/           the preflight, run here when the bundle is made: the lab's own pair graded and judged
                     (the gradebook holding them, the solution's result) and the feature cache, so that
                     each submission in Gradescope grades one notebook, not three

`run` is what run_autograder calls: it grades the one notebook with the same pipeline as
`grader grade` (the preflight only if the bundle's does not hold for this container: a
grade depends on the grader's code, the assignment, its data and weights, and whether a
sandbox runs, and any change means the pair is graded again) and writes results.json in Gradescope's format
(score, execution_time, output, visibility, tests). Student code never runs outside the
sandbox here either: where bubblewrap cannot make one (a container that forbids user
namespaces), nothing runs, and results.json says so to the student (score 0, visible) so
that the instructor hears of it; the container is no sandbox (the submission runs as the
user that writes results.json, and could write it itself).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
import time
import zipfile

from grader.config.manifest import Manifest
from grader.store.storage import write_atomic

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, when the autograder image is built.
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
/autograder/venv/bin/pip install /autograder/source/project
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it must write /autograder/results/results.json.
set -euo pipefail
cd /autograder/source
exec "${GRADER_VENV:-/autograder/venv}/bin/python" -m grader gradescope-run /autograder/source/assignment \\
    --submission /autograder/submission --results /autograder/results/results.json
"""

PROJECT_FILES = ("pyproject.toml", "README.md", "SECURITY.md")
PROJECT_PACKAGES = ("grader", "reference", "labs", "assignments")


SHIPPED_CACHE_BYTES = 256 * 2**20  # the preflight's feature cache goes into the bundle up to this size


def bundle(manifest: Manifest, zip_path: str, preflight: bool = True) -> str:
    """Write the autograder zip for `manifest`'s assignment, with its preflight's outcome
    (unless `preflight` is False, or this machine cannot make the sandbox: then the
    preflight runs in Gradescope, with every submission)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(os.path.dirname(zip_path) or ".", exist_ok=True)
    files = assignment_files(manifest)
    state = prepared(files) if preflight else {}
    partial = zip_path + ".partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        _add_text(archive, "setup.sh", SETUP)
        _add_text(archive, "run_autograder", RUN)
        for name in PROJECT_FILES:
            archive.write(os.path.join(root, name), f"project/{name}")
        for package in PROJECT_PACKAGES:
            for path in sorted(glob.glob(os.path.join(root, package, "**", "*"), recursive=True)):
                if os.path.isfile(path) and "__pycache__" not in path:
                    archive.write(path, f"project/{os.path.relpath(path, root)}")
        for name, data in files.items():
            archive.writestr(f"assignment/{name}", data)
        for name, data in state.items():
            archive.writestr(f"state/{name}", data)
    os.replace(partial, zip_path)
    return zip_path


def prepared(files: dict[str, bytes]) -> dict[str, bytes]:
    """The preflight of the assignment as the bundle holds it (`files`), run here: the
    gradebook with the lab's own pair, the solution's result, and the feature cache (if
    small enough), by their paths under the bundle's state/. {} where this machine cannot
    make the sandbox (the container will then run the preflight itself)."""
    from grader import batch
    from grader.config import manifest as manifest_mod
    from grader.run import Options
    from grader.sandbox import bwrap
    from grader.store.storage import STATE

    if bwrap.bubblewrap_problem() is not None:
        return {}
    with tempfile.TemporaryDirectory(prefix="grader-bundle-") as work:
        for name, data in files.items():
            write_atomic(os.path.join(work, "assignment", name), data)
        out, cache = os.path.join(work, "out"), os.path.join(work, "cache")
        batch.check(manifest_mod.load(os.path.join(work, "assignment")), Options(out_dir=out, quiet=True, jobs=1, cache_dir=cache))
        kept = {"out/gradebook.sqlite": os.path.join(out, "gradebook.sqlite"), f"out/{STATE}/reference.json": os.path.join(out, STATE, "reference.json")}
        cached = [path for path in glob.glob(os.path.join(cache, "**", "*"), recursive=True) if os.path.isfile(path)]
        if sum(os.path.getsize(path) for path in cached) <= SHIPPED_CACHE_BYTES:
            kept.update({f"cache/{os.path.relpath(path, cache)}": path for path in cached})
        state = {}
        for name, path in kept.items():
            with open(path, "rb") as handle:
                state[name] = handle.read()
        return state


def _add_text(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = 0o755 << 16  # executable, as Gradescope runs them
    archive.writestr(info, text)


def assignment_files(manifest: Manifest) -> dict[str, bytes]:
    """The assignment folder as the bundle holds it: its data and weights copied in, when
    they are not the demo's, and the manifest pointing at the copies."""
    files: dict[str, bytes] = {}
    toml = open(os.path.join(manifest.directory, "assignment.toml"), encoding="utf-8").read()
    with open(manifest.notebook_path, "rb") as handle:
        files[manifest.notebook] = handle.read()
    if manifest.lab.module:  # the assignment's trusted module: its demo data, scenarios and checks
        with open(os.path.join(manifest.directory, manifest.lab.module), "rb") as handle:
            files[manifest.lab.module] = handle.read()
    if manifest.data_pattern != "demo":
        pattern = manifest.data_pattern if os.path.isabs(manifest.data_pattern) else os.path.join(manifest.directory, manifest.data_pattern)
        for path in sorted(glob.glob(pattern)):
            with open(path, "rb") as handle:
                files[f"data/{os.path.basename(path)}"] = handle.read()
        toml = re.sub(r'(?m)^(\s*pattern\s*=\s*)".*"', lambda m: f'{m.group(1)}"data/{os.path.basename(pattern)}"', toml, count=1)
    if manifest.weights_file != "demo":
        weights = manifest.weights_file if os.path.isabs(manifest.weights_file) else os.path.join(manifest.directory, manifest.weights_file)
        with open(weights, "rb") as handle:
            files[f"weights/{os.path.basename(weights)}"] = handle.read()
        toml = re.sub(r'(?m)^(\s*file\s*=\s*)".*"', lambda m: f'{m.group(1)}"weights/{os.path.basename(weights)}"', toml, count=1)
    files["assignment.toml"] = toml.encode("utf-8")
    return files


def run(manifest: Manifest, submission_dir: str, results_path: str) -> dict:
    """Grade the submitted notebook in a grading run of its own (the preflight first);
    write and return results.json's content."""
    from grader.reports import exports
    from grader.run import Entry, GradingRun, Options
    from grader.sandbox import bwrap
    from grader.store import gradebook
    from reference.hashing import file_sha256

    started = time.monotonic()
    # Gradescope applies its own due date and late policy to what the autograder scores.
    manifest = dataclasses.replace(manifest, rules=dataclasses.replace(manifest.rules, due=None))
    notebooks = sorted(glob.glob(os.path.join(submission_dir, "**", "*.ipynb"), recursive=True))
    problem = bwrap.bubblewrap_problem()
    if problem is not None:
        payload = {"score": 0, "execution_time": 0, "visibility": "visible", "output": unsandboxed_message(problem)}
    elif not notebooks:  # said to the student at once, whatever the checks' visibility: they can submit again
        payload = {"score": 0, "execution_time": 0, "visibility": "visible",
                   "output": "No .ipynb file was submitted: upload your notebook (File > Download > Download .ipynb)."}
    else:
        with tempfile.TemporaryDirectory(prefix="grader-gradescope-") as work:
            path = notebooks[0]
            state = os.path.join(os.path.dirname(os.path.abspath(manifest.directory)), "state")
            if os.path.isdir(state):  # the bundle's preflight (and its feature cache): kept if it holds here
                shutil.copytree(state, work, dirs_exist_ok=True)
            options = Options(out_dir=os.path.join(work, "out"), quiet=True, jobs=1,
                              allow_unsandboxed=bwrap.bubblewrap_problem() is not None, cache_dir=os.path.join(work, "cache"))
            stored = gradebook.Stored("student", os.path.basename(path), file_sha256(path), os.path.getmtime(path), "file name", True)
            with GradingRun(manifest, options) as graded:
                for _ in graded.grade([Entry(stored, path)]):
                    pass
                view, _ = graded.write_class()
            row = next(r for r in view.rows if r.student == "student")
            payload = exports.gradescope(row, manifest.rules)
            if len(notebooks) > 1:
                payload["output"] = f"Graded {os.path.basename(notebooks[0])} (of {len(notebooks)} notebooks submitted). " + payload["output"]
    payload["execution_time"] = round(time.monotonic() - started, 2)
    write_atomic(results_path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return payload


def unsandboxed_message(problem: str) -> str:
    """What the student reads when this container cannot run the sandbox: not graded, and why."""
    return ("Your notebook was not graded: the autograder cannot make the sandbox it runs students' code in, in this "
            f"container ({problem}), and it never runs a notebook without one. This is not your doing: tell your "
            "instructor, who must let the autograder's container make user namespaces (or grade with `grader grade`), "
            "then regrade it.")
