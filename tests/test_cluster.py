"""Grading on a Dask cluster (grader/scale/cluster.py, grader/scale/dask_worker.py): the same grades as
the local pool, every notebook graded exactly once when a worker dies, a worker that
cannot sandbox refuses and the batch says why, and the gradebook is shared with local runs.

Every cluster here is started by the test (a LocalCluster through `--cluster local:N`, or
one the test makes) and closed by it."""

import functools
import hashlib
import logging
import multiprocessing
import os
import signal

import pytest

from grader import batch
from grader.cli import main
from grader.config import manifest as manifest_mod
from grader.faults import GraderError
from grader.run import Options
from grader.scale import dask_worker
from grader.scale import cluster as cluster_mod
from grader.scale.cluster import check_address, dask_settings
from grader.store import gradebook
from conftest import grade_all
from reference.hashing import file_sha256
from test_gradebook import TINY, make_submissions, rows

NO_BWRAP = {"PATH": "/nonexistent"}  # a worker whose PATH has no bwrap: the real check finds none


def grade_tiny(folder, out, **options):
    return batch.grade(manifest_mod.load(TINY), [str(folder)], Options(out_dir=str(out), quiet=True, **options)).results


def verdicts(results):
    return {r.submission: (r.status, r.score, [c.status for c in r.checks]) for r in results}


def no_dask_children() -> bool:
    """No worker process of a cluster this test process started is left (our own children only)."""
    return not [p for p in multiprocessing.active_children() if "Dask" in p.name]


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of two workers with the settings --cluster local:N uses, shared by the
    tests below that only need a cluster's address: each batch sets up its own grading
    plugin on it, and a worker a test kills is restarted by its nanny."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(dask_settings(3)):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    yield cluster.scheduler_address
    cluster.close()
    assert no_dask_children()


# --- without a cluster ------------------------------------------------------------------


def test_cluster_addresses():
    assert check_address("local:2") == "local:2" and check_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    for wrong in ("local:0", "local:two", "tcp://host:8786/path", ""):
        with pytest.raises(GraderError, match="neither a scheduler's address nor local:N"):
            check_address(wrong)


def test_a_bad_cluster_flag_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        main(["grade", TINY, "x", "--out", "o", "--cluster", "local:0"])
    assert "tcp://host:8786" in capsys.readouterr().err


def asset(folder, name, content: bytes) -> dask_worker.Asset:
    path = folder / name
    path.write_bytes(content)
    return dask_worker.Asset(str(path), hashlib.sha256(content).hexdigest())


def test_files_at_the_clients_paths_are_used_only_with_the_right_content(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_STAGING", str(tmp_path / "staged"))
    (tmp_path / "shared").mkdir()
    group = (asset(tmp_path / "shared", "a.tfrec", b"a"), asset(tmp_path / "shared", "b.tfrec", b"b"))
    places, missing = dask_worker.locate(group, "data")
    assert missing == () and places == {a: a.path for a in group}  # a shared file system
    (tmp_path / "shared" / "b.tfrec").write_bytes(b"not b")  # same name, other content: not trusted
    places, missing = dask_worker.locate(group, "data")
    assert missing == group and all(p.startswith(str(tmp_path / "staged")) for p in places.values())
    assert {os.path.basename(p) for p in places.values()} == {"a.tfrec", "b.tfrec"}  # one folder, the names kept


def test_staged_files_are_checked_by_their_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_STAGING", str(tmp_path / "staged"))
    (tmp_path / "client").mkdir()
    weights = asset(tmp_path / "client", "w.h5", b"weights")
    os.remove(weights.path)  # the worker cannot see the client's file
    plugin = dask_worker.GradingPlugin(None, dask_worker.Assets((), (weights,), ""), "r")
    plugin.places, plugin.missing = dask_worker.locate((weights,), "weights")
    assert plugin.status() == {"missing": [weights.sha256]}
    with pytest.raises(Exception, match="arrived damaged"):
        plugin.store(weights.sha256, b"weightz")
    plugin.store(weights.sha256, b"weights")
    assert plugin.missing == () and "missing" not in plugin.status()  # next: it warms up and offers to grade
    assert dask_worker.locate((weights,), "weights")[1] == ()  # found again by content, once staged


# --- a worker that cannot sandbox -----------------------------------------------------------


@pytest.fixture
def cluster_without_bwrap():
    import dask
    from distributed import LocalCluster

    with dask.config.set(dask_settings(3)):  # the settings --cluster local:N uses
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=NO_BWRAP)
    yield cluster
    cluster.close()
    assert cluster.status.name == "closed"


def test_a_worker_without_bubblewrap_refuses_and_the_batch_says_why(tmp_path, cluster_without_bwrap, capsys):
    folder = make_submissions(tmp_path / "subs", 1)
    out = tmp_path / "out"
    assert main(["grade", TINY, str(folder), "--out", str(out), "--quiet", "--cluster", cluster_without_bwrap.scheduler_address]) == 2
    error = capsys.readouterr().err
    assert "no worker of the cluster can grade this batch" in error
    assert "refuses: it cannot run student code in a sandbox: bubblewrap (bwrap) is not installed" in error
    assert rows(str(out)) == {}  # nobody graded, not even the preflight


@pytest.fixture
def mixed_cluster():
    """Two workers; the second one's PATH has no bwrap."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {"with-bwrap": {"cls": Nanny, "options": {"nthreads": 1}},
               "without-bwrap": {"cls": Nanny, "options": {"nthreads": 1, "env": NO_BWRAP}}}
    with dask.config.set(dask_settings(3)):
        cluster = SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}, silence_logs=logging.ERROR)
    yield cluster
    cluster.close()
    assert cluster.status.name == "closed"


@pytest.mark.slow
def test_the_workers_that_can_sandbox_grade_and_the_others_are_named(tmp_path, mixed_cluster, capsys):
    folder = make_submissions(tmp_path / "subs", 2)
    results = grade_tiny(folder, tmp_path / "out", cluster=mixed_cluster.scheduler_address)
    assert [(r.status, r.score, r.provenance["sandbox"]) for r in results] == [("graded", 1.0, True)] * 2
    assert "refuses to grade: it cannot run student code in a sandbox: bubblewrap (bwrap) is not installed" in capsys.readouterr().err


# --- the same grades as the local pool ------------------------------------------------------


# The scenarios that take different paths through the grader: graded on the fast path, a
# wrong answer, a crash in the student's cell, not a notebook, the codelab's own layout.
# (unfrozen_base, which trains in full, is left out for time: it is the local pool's test.)
SCENARIOS = ("global_pooling.ipynb", "fake_accuracy.ipynb", "syntax_error.ipynb", "not_a_notebook.ipynb", "colab_download.ipynb")


@pytest.mark.slow
def test_the_scenarios_get_the_grades_of_the_local_pool_on_two_cluster_workers(manifest, submissions, graded, tmp_path, two_workers):
    # `graded` is the session's batch of every scenario in the local pool (whose scores are
    # those of --jobs 1: tests/test_gradebook.py); here the same files on the cluster
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in SCENARIOS:
        (folder / name).write_bytes((submissions / name).read_bytes())
    on_cluster, _, _ = grade_all(manifest, folder, tmp_path / "cluster", cache_dir=str(tmp_path / "cache"), cluster=two_workers)
    local = {n: r for n, r in graded[0].items() if f"{n}.ipynb" in SCENARIOS}
    assert len(local) == len(SCENARIOS) and {r.status for r in local.values()} == {"graded", "ungradable"}
    assert {n: verdicts([r]) for n, r in on_cluster.items()} == {n: verdicts([r]) for n, r in local.items()}
    assert {n: r.checks for n, r in on_cluster.items()} == {n: r.checks for n, r in local.items()}  # messages and evidence too


# --- a worker that dies ---------------------------------------------------------------------


def dying_task(target: str, mode: str, marker: str):
    """The grading task, except that the worker dies (as by the OOM killer) on the notebook
    named `target`: once (the first time, noted in the file `marker`) or always. The
    instruction travels with each task: the cluster's workers were started before the test."""
    return functools.partial(_die_on, target, mode, str(marker))


def _die_on(target, mode, marker, notebook, context, name):
    if notebook.name == target and (mode == "always" or not os.path.exists(marker)):
        open(marker, "a").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return dask_worker.grade(notebook, context, name)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_costs_nothing_every_notebook_graded_once(tmp_path, two_workers):
    folder = make_submissions(tmp_path / "subs", 3)
    results = grade_tiny(folder, tmp_path / "out", cluster=two_workers, worker=dying_task("student01", "once", tmp_path / "killed"))
    assert os.path.exists(tmp_path / "killed")  # a worker did die, mid-task
    assert [(r.submission, r.status, r.score) for r in results] == [(f"student0{i}", "graded", 1.0) for i in range(3)]
    assert len(rows(str(tmp_path / "out"))) == 3 + 2  # each once


@pytest.mark.slow
def test_a_notebook_that_keeps_killing_workers_gets_a_grader_fault_scorecard(tmp_path, two_workers):
    folder = make_submissions(tmp_path / "subs", 3)
    always = dying_task("student01", "always", tmp_path / "killed")
    by_name = {r.submission: r for r in grade_tiny(folder, tmp_path / "out", cluster=two_workers, worker=always)}
    assert by_name["student01"].status == "ungradable" and "worker died while checking it, on 3 workers" in by_name["student01"].reason
    assert "grader's fault" in by_name["student01"].fix
    assert by_name["student00"].status == by_name["student02"].status == "graded"
    assert len(rows(str(tmp_path / "out"))) == 2 + 2  # not remembered: a rerun tries it again


# --- one gradebook -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_batch_started_on_the_cluster_is_finished_locally(tmp_path, monkeypatch):
    folder = make_submissions(tmp_path / "subs", 4)
    out = tmp_path / "out"
    real_put, stored = gradebook.Gradebook.put, []

    def put_then_stop(book, setting, result):  # the instructor presses Ctrl-C after four results
        real_put(book, setting, result)
        stored.append(result.submission)
        if len(stored) == 2 + 2:
            raise KeyboardInterrupt

    started = []  # the LocalCluster that --cluster local:2 starts

    def recorded(*args):
        started.append(real_local_cluster(*args))
        return started[-1]

    real_local_cluster = cluster_mod.local_cluster
    monkeypatch.setattr(gradebook.Gradebook, "put", put_then_stop)
    monkeypatch.setattr(cluster_mod, "local_cluster", recorded)
    with pytest.raises(KeyboardInterrupt):
        grade_tiny(folder, out, cluster="local:2")
    monkeypatch.undo()
    assert len(started) == 1 and started[0].status.name == "closed"  # the interrupted batch closed its cluster
    before = rows(str(out))
    assert len(before) == 4
    results = grade_tiny(folder, out, jobs=1)
    after = rows(str(out))
    assert len(after) == 4 + 2 and all(after[sha] == at for sha, at in before.items())  # nothing graded twice
    assert [(r.status, r.score) for r in results] == [("graded", 1.0)] * 4


@pytest.mark.slow
def test_a_worker_that_does_not_see_the_clients_files_is_sent_them_once(tmp_path, manifest):
    """The worker's view of the client's data folder is a folder that does not exist (as
    on a cluster without a shared file system); the client sends each file, checked there."""
    import dask
    from distributed import Client, LocalCluster

    from grader import context as context_mod

    context = context_mod.resolve(manifest, str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    real = dask_worker.assets_of(context)
    unseen = lambda a: dask_worker.Asset(str(tmp_path / "elsewhere" / a.relative), a.sha256, a.within)  # noqa: E731
    assets = dask_worker.Assets(*(tuple(map(unseen, group)) for group in (real.data, real.weights)), real.code, tuple(map(unseen, real.lab)))
    with dask.config.set(dask_settings(3)):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                               env={"GRADER_STAGING": str(tmp_path / "staged")})
    try:
        with Client(cluster) as client:
            client.register_plugin(dask_worker.GradingPlugin(context, assets, "r"), name="p")
            (status,) = client.run(dask_worker.status, "p").values()
            assert sorted(status["missing"]) == sorted(a.sha256 for a in real.all())
            first = real.data[0]
            with pytest.raises(Exception, match="arrived damaged"):
                client.run(dask_worker.receive, "p", first.sha256, b"not the file")
            for item in real.all():
                (status,) = client.run(dask_worker.receive, "p", item.sha256, open(item.path, "rb").read()).values()
            assert "missing" not in status
            staged = [os.path.join(folder, name) for folder, _, names in os.walk(tmp_path / "staged") for name in names if name.endswith(".tfrec")]
            assert len(staged) == len(real.data) and {file_sha256(p) for p in staged} == {a.sha256 for a in real.data}
    finally:
        cluster.close()
    assert cluster.status.name == "closed"


def test_a_result_lost_with_its_worker_is_graded_again_not_waited_for(monkeypatch):
    """A task finished, then its worker died before the client fetched the result: fetching
    would wait for Dask to compute it again, which needs this very thread (_admit). The
    client gives up on the fetch and grades the notebook again, within its attempts."""
    from grader.grading.pipeline import Work

    class Lost:
        status, cancelled = "finished", False

        def result(self, timeout=None):
            assert timeout == cluster_mod.FETCH_SECONDS  # never waits without a bound
            raise TimeoutError

        def cancel(self):
            Lost.cancelled = True

    pool = cluster_mod.DaskPool.__new__(cluster_mod.DaskPool)
    pool.attempts = cluster_mod.Attempts(None, 2)
    work = Work("k" * 64, "student.ipynb", "student")
    assert pool._settle(work, Lost()) is None and Lost.cancelled  # tried again
    monkeypatch.setattr(cluster_mod.executors, "died_result", lambda context, work, why, tried: ("given up", why, tried))
    assert pool._settle(work, Lost()) == cluster_mod.Done(work, ("given up", "its result was lost with the worker that held it", 2))
