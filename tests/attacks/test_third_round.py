"""The third round's attacks that need no batch: Gradescope without a sandbox, the ports a
cluster opens, the forwarded headers the workshop server believes. (The notebooks of the
round are graded with the others in test_attacks.py.)"""

import json

from grader import batch, gradescope, sandbox
from grader import cluster as cluster_mod
from grader.serve import proxy_settings

REWRITES_RESULTS = """import json, os, time
for _ in range(600):  # wait for the autograder's results.json, then make it full marks
    if os.path.exists('/autograder/results/results.json'):
        json.dump({'score': 100}, open('/autograder/results/results.json', 'w'))
        break
    time.sleep(0.1)"""


def test_gradescope_without_a_sandbox_runs_nothing_and_says_so(manifest, released, tmp_path, monkeypatch):
    """Where the container cannot make the sandbox, the notebook that would rewrite
    results.json as the grader's user is never run: the student reads why, with 0 points."""
    from grader import scenarios

    _, playground = released
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "lab.ipynb").write_bytes(scenarios.with_answer(playground, "model", REWRITES_RESULTS))
    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda: "user namespaces are not allowed here")

    def graded(*args, **kwargs):
        raise AssertionError("a notebook was graded without a sandbox")

    monkeypatch.setattr(batch, "grade", graded)
    results = tmp_path / "results.json"
    payload = gradescope.run(manifest, str(submission), str(results))
    assert json.loads(results.read_text()) == payload
    assert payload["score"] == 0 and payload["visibility"] == "visible" and "tests" not in payload
    assert "was not graded" in payload["output"] and "user namespaces are not allowed here" in payload["output"]
    assert "never runs a notebook without one" in payload["output"]


def test_a_local_cluster_listens_on_loopback_only():
    """Its dashboard shows task keys (students' names) and logs: it, the scheduler and the
    workers bind 127.0.0.1."""
    cluster = cluster_mod.local_cluster(1, 0, 1)
    try:
        addresses = [cluster.scheduler_address, *(w.address for w in cluster.workers.values() if w.address)]
        assert addresses and all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        dashboard = cluster.scheduler.http_server.port, cluster.dashboard_link
        assert "127.0.0.1" in cluster.dashboard_link, dashboard
        bound = {socket.getsockname()[0] for server in cluster.scheduler.http_server._sockets.values() for socket in [server]}
        assert bound <= {"127.0.0.1"}, bound
    finally:
        cluster.close()


def test_forwarded_headers_are_believed_only_from_the_proxies_named():
    import uvicorn

    async def app(scope, receive, send):
        pass

    nobody = uvicorn.Config(app, **proxy_settings(""))
    nobody.load()
    assert nobody.proxy_headers is False and type(nobody.loaded_app).__name__ != "ProxyHeadersMiddleware"
    named = uvicorn.Config(app, **proxy_settings(" 127.0.0.1 "))
    named.load()
    assert named.proxy_headers is True and named.forwarded_allow_ips == "127.0.0.1"
    assert type(named.loaded_app).__name__ == "ProxyHeadersMiddleware"
