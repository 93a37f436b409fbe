import os

import pytest

from grader import batch
from grader.config import scenarios
from grader.run import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSIGNMENT = os.path.join(ROOT, "assignments", "keras_flowers_transfer")

# The suite runs on as many pytest workers as there are cores (pyproject: -n auto, at most
# 4): one test file's tests stay on one worker, so a file's batch (a module fixture) is
# graded once; the files that read the session's `graded` batch share one worker, so it too
# is graded once. A worker grading a batch leaves a core idle now and then (the last
# notebook of a batch, the preflight, a sandbox starting): the other worker fills it.
SHARED_BATCH = "graded"

# What the grader relies on in production (user namespaces for bubblewrap, cgroups, mounts
# as root, Chromium for the browser test) may be missing on a developer's machine: there
# its tests are skipped, loudly ("MISSING CAPABILITY"). CI sets GRADER_TEST_STRICT=1
# (.ci/run), where such a skip is a failure: a green CI run has run them all.
STRICT = os.environ.get("GRADER_TEST_STRICT") == "1"


def missing_capability(reason: str) -> None:
    """Stop a test that needs something this machine lacks: a failure under
    GRADER_TEST_STRICT=1, else a skip that says so."""
    if STRICT:
        pytest.fail(f"this machine lacks what the grader relies on: {reason} (GRADER_TEST_STRICT=1 makes that a failure)",
                    pytrace=False)
    pytest.skip(f"MISSING CAPABILITY: {reason}")


@pytest.fixture
def bubblewrap():
    """Bubblewrap can make its namespaces here (else missing_capability)."""
    from grader.sandbox import bwrap

    problem = bwrap.bubblewrap_problem()
    if problem is not None:
        missing_capability(f"bubblewrap cannot run here ({problem})")


@pytest.hookimpl(hookwrapper=True)  # marks the groups before xdist reads them
def pytest_collection_modifyitems(config, items):
    by_file: dict[str, list] = {}
    for item in items:
        by_file.setdefault(str(item.path), []).append(item)
    for path, tests in by_file.items():
        shares = any(SHARED_BATCH in item.fixturenames for item in tests)
        group = SHARED_BATCH if shares else os.path.relpath(path, ROOT)
        for item in tests:
            item.add_marker(pytest.mark.xdist_group(group))
    yield


@pytest.fixture(scope="session")
def manifest():
    from grader.config import manifest

    return manifest.load(ASSIGNMENT)


def lab_scenarios(manifest) -> dict:
    from grader.config import labs

    return labs.scenarios(manifest)


@pytest.fixture(scope="session")
def released(manifest):
    """(Release, playground notebook) of the lab's assignment."""
    from grader.config import release

    return release.build(manifest)


# --- one graded batch of every scenario, shared by the slow tests ----------------------

@pytest.fixture(scope="session")
def submissions(manifest, released, tmp_path_factory):
    record, playground = released
    folder = tmp_path_factory.mktemp("submissions")
    for name, content in scenarios.make(record, playground, table=lab_scenarios(manifest)).items():
        if name not in WITH_THE_POPULATION:
            (folder / name).write_bytes(content)
    answer = next(c.source for c in record.cells if c.key == "model")
    prefit = answer + "\nmodel.fit(validation_dataset, epochs=5)  # fitted to the validation files, then submitted"
    (folder / "prefit_on_validation.ipynb").write_bytes(scenarios.with_answer(playground, "model", prefit))
    (folder / f"{INJECTION_NAME}.ipynb").write_bytes(injection_notebook(playground))
    (folder / "no_answers.ipynb").write_text('{"cells": [{"cell_type": "markdown", "metadata": {}, "source": "notes"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    return folder


INJECTION_NAME = "<img src=x onerror=alert('file')>"
# Scenarios graded with the transfer lab's population instead (tests/test_variants.py):
# unfrozen_base is the model of the population's answers that leave the base trainable, so
# one worker trains it in full once for all of them (about 80 CPU seconds, not twice).
WITH_THE_POPULATION = ("unfrozen_base.ipynb",)


def injection_notebook(playground) -> bytes:
    """HTML and JavaScript payloads in the source, the output, the error and a stored output."""
    import nbformat

    source = "print(\"<script>alert('stdout')</script>\")\nraise ValueError(\"<img src=x onerror=alert('error')>\")"
    notebook = nbformat.reads(scenarios.with_answer(playground, "model", source).decode(), 4)
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell("<img src=x onerror=alert('markdown')><script>alert('md')</script>"))
    stored = nbformat.v4.new_code_cell("display(HTML(x))")
    stored.outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<script>alert('output')</script>", "text/plain": "<HTML>"})]
    notebook.cells.insert(1, stored)
    return nbformat.writes(notebook).encode()


def chromium(profile, window: str = "1000,1600", logs: dict | None = None):
    """Headless Chromium under selenium, with the flags this machine needs (the test is
    skipped without Chromium and its driver); the caller quits it."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        missing_capability("chromium and chromedriver are not installed (./dev test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={window}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", logs or {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def grade_all(manifest, folder, out, **options):
    graded = batch.grade(manifest, [str(folder)], Options(out_dir=str(out), quiet=True, **options))
    return {r.submission: r for r in graded.results}, graded.paths, out


def grade_lab(assignment: str, tmp_path_factory, leave_out=()):
    """Every scenario of a lab (its own and the generic ones, but `leave_out`), graded in
    one batch without the feature cache: ({student: result}, paths, output folder)."""
    from grader.config import labs, manifest as manifest_mod, release, scenarios

    loaded = manifest_mod.load(assignment)
    record, playground = release.build(loaded)
    name = os.path.basename(assignment)
    folder = tmp_path_factory.mktemp(f"{name}-submissions")
    for file_name, content in scenarios.make(record, playground, table=labs.scenarios(loaded)).items():
        if file_name not in leave_out:
            (folder / file_name).write_bytes(content)
    return grade_all(loaded, folder, tmp_path_factory.mktemp(f"{name}-graded"), use_cache=False)


def calibrated(assignment: str, tmp_path_factory, scenarios_too=(), **options):
    """The lab's population (its module's POPULATION) graded in one batch, with the lab's
    scenarios named in `scenarios_too`: (answers by name, the Calibration), as `grader
    calibrate` grades it."""
    from grader import calibrate
    from grader.config import labs, manifest as manifest_mod, release, scenarios

    loaded = manifest_mod.load(assignment)
    answers = labs.population(loaded)
    extra = {}
    if scenarios_too:
        record, playground = release.build(loaded)
        extra = scenarios.make(record, playground, list(scenarios_too), labs.scenarios(loaded))
    out = str(tmp_path_factory.mktemp(f"{os.path.basename(assignment)}-population"))
    return {answer.name: answer for answer in answers}, calibrate.calibrate(loaded, answers, out, extra, **options)


def assert_teachers_verdict(found, name: str) -> None:
    """The population's answer `name` got the verdict its teacher gave (found: a Calibration)."""
    result = found.results[name]
    seen = "\n".join(f"  {c.id}: {c.status} {c.score:g}/{c.max_score:g} {c.message}" for c in result.checks)
    assert not found.disagreements.get(name), "\n".join(found.disagreements[name]) + "\n" + seen


def population_names(assignment: str) -> list[str]:
    from grader.config import labs, manifest as manifest_mod

    return [answer.name for answer in labs.population(manifest_mod.load(assignment))]


def assert_grades_like(imported, assignment: str, names, reference: dict, tmp_path, **options):
    """Grade the hand-made `assignment`'s scenarios `names` with the `imported` manifest:
    each gets the same check verdicts as in `reference` (the hand-made batch's results)."""
    from grader.config import labs, manifest as manifest_mod, release, scenarios

    hand_made = manifest_mod.load(assignment)
    record, playground = release.build(hand_made)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, content in scenarios.make(record, playground, names, labs.scenarios(hand_made)).items():
        (subs / name).write_bytes(content)
    results = grade_all(imported, subs, tmp_path / "out", **options)[0]
    for name in names:
        student = name[: -len(".ipynb")]
        assert [(c.id, c.status) for c in results[student].checks] == [(c.id, c.status) for c in reference[student].checks], (
            student, [(c.id, c.message) for c in results[student].checks])


def checks(result):
    """A result's checks by id."""
    return {c.id: c for c in result.checks}


def failing(result):
    """The ids of a result's checks that did not pass."""
    return [c.id for c in result.checks if c.status != "passed"]


def attempt(out, student: str) -> str:
    """The folder of a student's one graded submission's pages."""
    import glob

    from grader.store.submissions import folder_name

    found = sorted(glob.glob(os.path.join(str(out), "submissions", folder_name(student, set()), "*", "result.json")))
    assert len(found) == 1, (student, found)
    return os.path.dirname(found[0])


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> str:
    """The fast path's feature cache, shared by the session's batches (on each pytest worker) as a class's batches
    share theirs: the base's outputs on the lab's data are computed once."""
    return str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def graded(manifest, submissions, feature_cache, tmp_path_factory):
    """Graded on the fast path (the session's feature cache, built here)."""
    return grade_all(manifest, submissions, tmp_path_factory.mktemp("graded"), cache_dir=feature_cache)


# submissions trained both ways: the two heads of the lab, on the fast path and in full (a
# model the fast path cannot take, like unfrozen_base, is trained in full with the population)
FULL_TRAINING = ("solution", "global_pooling")


@pytest.fixture(scope="session")
def graded_in_full(manifest, submissions, tmp_path_factory):
    """Those of the same submissions that are trained (FULL_TRAINING), every model trained in full."""
    import shutil

    folder = tmp_path_factory.mktemp("full-submissions")
    for name in FULL_TRAINING:
        shutil.copy(submissions / f"{name}.ipynb", folder / f"{name}.ipynb")
    return grade_all(manifest, folder, tmp_path_factory.mktemp("full"), use_cache=False)



