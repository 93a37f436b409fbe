"""The workshop server under a class, on loopback, at the demo's scale.

    python bench/bench_serve.py                       # 20 idle uploads, then a burst of 200
    python bench/bench_serve.py --idle 3 --burst 10   # a quick look
    python bench/bench_serve.py --arrivals 200/600    # students arriving at random, each lab in turn
    python bench/bench_serve.py --arrivals 200/600 --labs transfer --scale codelab

(0) Arrivals (`--arrivals N/S`), for each lab in `--labs` (transfer, convnet, tfdata), a
    server of its own: N students join at times drawn from a Poisson process over S
    seconds (N arrival times uniform over S: the process, given N arrivals); each uploads
    one to three times (60/30/10 in a hundred), each next time 15 to 45 s after reading
    the last scorecard; a first upload is wrong one time in seven (the lab's population
    of wrong answers), every other upload correct (one of its population of correct
    answers, drawn at random: the models differ as a class's do). Every notebook is distinct
    (a markdown cell names its student and try). Latency: upload accepted -> the
    student's live part, polled every second as the page polls it, shows the result (the
    scorecard is then read). Machine cost: the CPU seconds the whole machine spent while
    the server had work (from /proc/stat, the bench's own clients included), per upload.
    Memory: every process of the server's tree, by role, its peak resident size
    (VmHWM). `--scale codelab` grades the transfer lab on 3,670 synthetic photos at 192 px
    (made once, in the working folder) with MobileNetV2 at 192.

(1) Idle latency: one student at a time uploads a notebook (curl's way: /api/upload)
    to a server whose workers are warm, and polls their page's live part as the page's
    script does, until the scorecard is there: upload -> scorecard, median and 95th
    percentile.
(2) Burst: `--burst` distinct notebooks (the demo's scenarios in turn, each made distinct
    by a markdown cell naming its student; the unfrozen base, whose full training takes
    about 150 s here, only with --full-training) from as many students, sent by `--clients`
    concurrent clients; while the queue drains, `--pollers` students poll their page's
    live part in full (no version: every answer rendered) every 1.5 s and the projector
    page's every 2 s. Reported: the send time, every upload accepted, graded and given
    exactly one result (the queue's `applied`), none lost; the live parts' response
    times (median, 99th percentile); the drain time (first upload sent -> last result);
    the server process's peak resident memory (its grading workers are processes of
    their own, reported apart).
(3) The same notebooks graded by `grader grade` (same --jobs, same warm feature cache),
    timed from the command's start to its end (its preflight is already in its gradebook:
    it grades the same lab's solution the server graded, in a gradebook of its own, so it
    is graded once more there; that run is timed apart and said).

Loopback only; everything bounded: each wait has a deadline and the server is stopped
at the end (SIGTERM, then SIGKILL of its process group after 90 s).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from grader.config import labs, manifest as manifest_mod, release, scenarios  # noqa: E402
from peaks import Peaks  # noqa: E402

ASSIGNMENT = os.path.join(ROOT, "assignments", "keras_flowers_transfer")
PYTHON = sys.executable
FULL = False  # --full-training


LEFT_OUT = {"not_a_notebook.ipynb"}  # refused at upload, so never queued
FULL_TRAINING = "unfrozen_base.ipynb"  # trains the whole MobileNetV2: about 150 s on this machine, 20x the others


def notebooks(count: int, offset: int = 0, full_training: bool = False) -> list[bytes]:
    """`count` distinct submissions: the demo's scenarios in turn (not the non-notebook,
    which the server refuses; not the unfrozen base unless `full_training`), each with a
    markdown cell naming its student."""
    loaded = manifest_mod.load(ASSIGNMENT)
    built, playground = release.build(loaded)
    left_out = LEFT_OUT if full_training else LEFT_OUT | {FULL_TRAINING}
    made = [content for name, content in scenarios.make(built, playground, table=labs.scenarios(loaded)).items() if name not in left_out]
    out = []
    for n in range(offset, offset + count):
        notebook = nbformat.reads(made[n % len(made)].decode(), as_version=4)
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"student {n}"))
        out.append(nbformat.writes(notebook).encode())
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A `grader serve` in a process group of its own, with a roster of `students`."""

    def __init__(self, work: str, students: int, jobs: int, cache: str, assignment: str = ASSIGNMENT):
        self.out, self.port = os.path.join(work, "served"), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        roster = os.path.join(work, "roster.csv")
        with open(roster, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name", "email"])
            writer.writerows([[f"s{n:03d}", f"Student {n}", f"s{n:03d}@example.org"] for n in range(students)])
        links = os.path.join(work, "links.csv")
        command = [PYTHON, "-u", "-m", "grader", "serve", assignment, "--out", self.out, "--port", str(self.port), "--roster", roster,
                   "--links", links, "--uploads-per-minute", "1000", "--cache-dir", cache, "--quiet"] + (["--jobs", str(jobs)] if jobs else [])
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped: see {self.log.name}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            raise SystemExit("the server did not start within 15 minutes")
        with open(links, newline="") as handle:
            self.tokens = {row["student"]: row["link"].rsplit("/", 1)[1] for row in csv.DictReader(handle)}
        self.admin = re.search(r"/a/(\S+)", open(self.log.name).read()).group(1)

    def upload(self, student: str, data: bytes, client=None) -> str:
        response = (client or self.http).post("/api/upload", headers={"authorization": f"Bearer {self.tokens[student]}"},
                                              files={"notebook": ("lab.ipynb", data, "application/json")})
        if response.status_code != 200:
            raise RuntimeError(f"upload of {student} refused: {response.status_code} {response.text}")
        return re.search(r"\((upload-\d+)\)", response.text).group(1)

    def state(self, student: str, client=None) -> str:
        text = (client or self.http).get(f"/s/{self.tokens[student]}/live").text
        return re.search(r'id="state" data-state="(\w+)"', text).group(1)

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.process.pid}/status") as handle:
                return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1)) * 1024
        except (OSError, AttributeError):
            return 0

    def tree_rss(self) -> int:
        """The resident memory of the server's whole process group (workers, sandboxes)."""
        total = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.getpgid(int(pid)) == self.process.pid:
                        with open(f"/proc/{pid}/status") as handle:
                            total += int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1)) * 1024
                except (OSError, AttributeError, ProcessLookupError):
                    pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.http.close()
        self.log.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def idle_latency(server: Served, count: int, grading: list[float]) -> list[float]:
    """Upload -> scorecard, one at a time; `grading` gets each result's own grading time."""
    seconds = []
    for n, data in enumerate(notebooks(count, 1000, FULL)):
        student = f"s{n:03d}"
        started = time.perf_counter()
        name = server.upload(student, data)
        deadline = time.monotonic() + 600
        while server.state(student) not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
        page = server.http.get(f"/s/{server.tokens[student]}/a/{name}/scorecard.html")
        seconds.append(time.perf_counter() - started)
        graded = server.http.get(f"/s/{server.tokens[student]}/a/{name}/result.json").json()["provenance"]["seconds"]
        grading.append(graded)
        print(f"  idle upload {n + 1}/{count}: {seconds[-1]:.1f} s ({page.status_code}); the grading itself {graded:.1f} s", flush=True)
    return seconds


def burst(server: Served, count: int, clients: int, pollers: int, first: int) -> dict:
    import httpx

    students = [f"s{n:03d}" for n in range(first, first + count)]
    data = notebooks(count, 0, FULL)
    stop = threading.Event()
    timings: dict[str, list[float]] = {"student": [], "admin": []}
    peak = {"server": 0, "tree": 0}

    def poll(kind: str, path: str, every: float) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get(path)
                timings[kind].append(time.perf_counter() - started)
                stop.wait(every)

    def watch_memory() -> None:
        while not stop.is_set():
            peak["server"] = max(peak["server"], server.rss())
            peak["tree"] = max(peak["tree"], server.tree_rss())
            stop.wait(0.5)

    threads = [threading.Thread(target=poll, args=("student", f"/s/{server.tokens[s]}/live", 1.5)) for s in students[:pollers]]
    threads.append(threading.Thread(target=poll, args=("admin", f"/a/{server.admin}/live", 2.0)))
    threads.append(threading.Thread(target=watch_memory))
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    local = threading.local()

    def send(pair):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, timeout=120)
        return server.upload(pair[0], pair[1], local.client)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        names = list(pool.map(send, zip(students, data)))
    sent = time.perf_counter() - started
    print(f"  burst: {len(names)} uploads accepted in {sent:.1f} s", flush=True)
    deadline = time.monotonic() + 4 * 3600
    while time.monotonic() < deadline:
        counts = server.http.get("/healthz").json()
        if counts["waiting"] == 0 and counts["grading"] == 0:
            break
        print(f"  {time.perf_counter() - started:6.0f} s: waiting {counts['waiting']}, grading {counts['grading']}, done {counts['done']}, failed {counts['failed']}", flush=True)
        time.sleep(30)
    drained = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()
    return {"sent": sent, "names": names, "drained": drained, "timings": timings, "peak": peak}


def exactly_once(out: str, names: list[str]) -> tuple[int, int, int]:
    """(uploads with one result, with none, with more than one) among `names`."""
    import sqlite3

    db = sqlite3.connect(os.path.join(out, "serve.sqlite"))
    ids = [int(n.split("-")[1]) for n in names]
    rows = dict(db.execute(f"SELECT id, applied FROM uploads WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
    db.close()
    return (sum(1 for i in ids if rows.get(i) == 1), sum(1 for i in ids if not rows.get(i)), sum(1 for i in ids if (rows.get(i) or 0) > 1))


def batch_time(work: str, count: int, jobs: int, cache: str) -> float:
    folder = os.path.join(work, "burst-files")
    os.makedirs(folder, exist_ok=True)
    for n, data in enumerate(notebooks(count, 0, FULL)):
        with open(os.path.join(folder, f"s{n:03d}.ipynb"), "wb") as handle:
            handle.write(data)
    command = [PYTHON, "-m", "grader", "grade", ASSIGNMENT, folder, "--out", os.path.join(work, "batch"), "--cache-dir", cache, "--quiet"]
    command += ["--jobs", str(jobs)] if jobs else []
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=4 * 3600)
    return time.perf_counter() - started


# --- (0) arrivals ----------------------------------------------------------------------

LABS = {"transfer": "keras_flowers_transfer", "convnet": "keras_flowers_convnet", "tfdata": "keras_flowers_tfdata"}
TRIES = (1, 1, 1, 1, 1, 1, 2, 2, 2, 3)  # uploads per student: 60/30/10 in a hundred
WRONG_FIRST = 7  # one first upload in this many is wrong


def population_notebooks(assignment: str) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """The lab's population as notebooks: (correct, wrong), each (answer's name, notebook)."""
    from grader.config import population

    loaded = manifest_mod.load(assignment)
    _, playground = release.build(loaded)
    key = loaded.answer_cells[0]
    answers = [a for a in labs.population(loaded) if not a.untouched]
    made = [(a.name, population.notebook_of(a, playground, key), a.correct) for a in answers]
    return [(n, b) for n, b, ok in made if ok], [(n, b) for n, b, ok in made if not ok]


def distinct(notebook: bytes, student: str, attempt: int) -> bytes:
    loaded = nbformat.reads(notebook.decode(), as_version=4)
    loaded.cells.append(nbformat.v4.new_markdown_cell(f"{student}, try {attempt}"))
    return nbformat.writes(loaded).encode()


def busy_jiffies() -> int:
    """The machine's CPU time so far (all cores, not idle or waiting), in clock ticks."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def codelab_assignment(work: str) -> str:
    """The transfer lab at the codelab's scale: 3,670 synthetic photos at 192 px, MobileNetV2 at 192."""
    from grader import context
    from labs import flowers
    from reference import weights

    data = os.path.join(work, "flowers-3670-192")
    if not os.path.isdir(data):
        print("making 3,670 synthetic flowers at 192x192 ...", flush=True)
        flowers.make_synthetic_flowers(data, 192, 3670)
    target = os.path.join(work, "transfer-codelab")
    if not os.path.isdir(target):
        shutil.copytree(os.path.join(ROOT, "assignments", LABS["transfer"]), target)
        path = os.path.join(target, "assignment.toml")
        text = open(path).read().replace('pattern = "demo"', f'pattern = "{data}/*.tfrec"').replace("image_size = 96", "image_size = 192")
        open(path, "w").write(text)
    demo = manifest_mod.load(os.path.join(ROOT, "assignments", LABS["transfer"]))
    weights.stage(context.weights_for(demo, None), os.path.join(work, "keras"), demo.lab.base, 192)
    return target


def arrivals(lab: str, assignment: str, students: int, span: float, jobs: int, work: str, seed: int = 7) -> dict:
    import httpx

    correct, wrong = population_notebooks(assignment)
    rng = random.Random(seed)
    plan = []
    for n, at in enumerate(sorted(rng.uniform(0, span) for _ in range(students))):
        tries = rng.choice(TRIES)
        first_wrong = bool(wrong) and rng.randrange(WRONG_FIRST) == 0
        answers = [wrong[rng.randrange(len(wrong))] if first_wrong and t == 0 else correct[rng.randrange(len(correct))] for t in range(tries)]
        plan.append((f"s{n:03d}", at, [rng.uniform(15, 45) for _ in range(tries)], answers))
    folder = os.path.join(work, lab)
    os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    server = Served(folder, students, jobs, os.path.join(folder, "cache"), assignment)
    print(f"  {lab}: server ready (preflight included) in {time.perf_counter() - started:.0f} s; "
          f"{sum(len(p[3]) for p in plan)} uploads planned", flush=True)
    peaks = Peaks(server.process.pid)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    began = time.perf_counter()
    jiffies = busy_jiffies()

    def student(name: str, at: float, thinks: list[float], answers: list) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            time.sleep(max(0.0, began + at - time.perf_counter()))
            for attempt, ((_, notebook), think) in enumerate(zip(answers, thinks)):
                try:
                    sent = time.perf_counter()
                    upload = server.upload(name, distinct(notebook, name, attempt), client)
                    deadline = sent + 3600
                    while server.state(name, client) not in ("done", "failed"):
                        if time.perf_counter() > deadline:
                            raise RuntimeError("no result within an hour")
                        time.sleep(1.0)
                    waited = time.perf_counter() - sent
                    page = client.get(f"/s/{server.tokens[name]}/a/{upload}/scorecard.html")
                    if page.status_code != 200:
                        raise RuntimeError(f"scorecard {page.status_code}")
                    with lock:
                        latencies.append(waited)
                except Exception as error:  # noqa: BLE001 - counted and said, the others go on
                    with lock:
                        failures.append(f"{name} try {attempt}: {error}")
                    return
                time.sleep(think)

    threads = [threading.Thread(target=student, args=p, daemon=True) for p in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    spent = (busy_jiffies() - jiffies) / os.sysconf("SC_CLK_TCK")
    memory = peaks.report()
    server.stop()
    return {"latencies": latencies, "failures": failures, "seconds": seconds, "cpu": spent, "memory": memory,
            "where": where_the_time_goes(server.out)}


def where_the_time_goes(out: str) -> str:
    """Per upload graded, the mean of what each part cost: the sandbox's CPU, the grader's own
    work (rebuild, checks, training), the training alone (wall), and the server's own work on
    a result (its gradebook and pages: the run's facts, kept when it stops)."""
    import glob
    import json

    found = [json.load(open(p)) for p in glob.glob(os.path.join(out, "submissions", "*", "*", "result.json"))]
    provenance = [r.get("provenance", {}) for r in found]
    mean = lambda key: statistics.fmean([p.get(key) or 0.0 for p in provenance]) if provenance else 0.0  # noqa: E731
    training = statistics.fmean([(r.get("training") or {}).get("seconds", 0.0) for r in found]) if found else 0.0
    stopped = sum(1 for r in found if (r.get("training") or {}).get("stopped"))
    try:
        facts = json.load(open(os.path.join(out, ".grader", "batch.json")))
    except (OSError, ValueError):
        facts = {}
    own = facts.get("client_seconds_per_result")
    return (f"where the time goes, per upload (means over {len(found)} results): sandbox {mean('sandbox_cpu_seconds'):.2f} CPU s, "
            f"the grader's own work {mean('grader_cpu_seconds'):.2f} CPU s (of it, training {training:.2f} s wall; "
            f"{stopped} stopped early), the server's own work on a result (its gradebook, its pages) {own if own is not None else '?'} s")


def print_arrivals(lab: str, students: int, span: float, found: dict) -> None:
    seconds = found["latencies"]
    uploads = len(seconds)
    if not seconds:
        print(f"arrivals {lab}: no upload was graded; {found['failures'][:3]}")
        return
    print(f"arrivals {lab}: {students} students, {uploads} uploads over {span:g} s: p50 {statistics.median(seconds):.1f} s, "
          f"p95 {percentile(seconds, 0.95):.1f} s, max {max(seconds):.1f} s, machine cost {found['cpu'] / uploads:.1f} s/upload", flush=True)
    print(f"  the run took {found['seconds']:.0f} s; {len(found['failures'])} upload(s) failed{': ' + '; '.join(found['failures'][:3]) if found['failures'] else ''}")
    print(f"  {found['where']}")
    for line in found["memory"]:
        print(f"  peak memory, {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=20, help="uploads one at a time (default 20)")
    parser.add_argument("--burst", type=int, default=200, help="uploads at once, from as many students (default 200)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients sending the burst (default 16)")
    parser.add_argument("--pollers", type=int, default=30, help="students polling their page during the drain (default 30)")
    parser.add_argument("--jobs", type=int, default=0, help="grading workers (default: as grader grade chooses)")
    parser.add_argument("--no-batch", action="store_true", help="leave out the `grader grade` comparison")
    parser.add_argument("--full-training", action="store_true", help=f"include {FULL_TRAINING} in the mix (left out by default: see LEFT_OUT)")
    parser.add_argument("--work", default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--arrivals", help="N/S: N students arriving over S seconds, each lab in --labs in turn (then nothing else)")
    parser.add_argument("--labs", default="transfer,convnet,tfdata", help="the labs of --arrivals (default: all three)")
    parser.add_argument("--scale", choices=("demo", "codelab"), default="demo",
                        help="--arrivals: the demo's data, or the codelab's (transfer only: 3,670 photos at 192 px)")
    args = parser.parse_args()
    if args.arrivals:
        students, span = (float(v) for v in args.arrivals.split("/"))
        work = args.work or tempfile.mkdtemp(prefix="bench-arrivals-")
        print(f"working in {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; scale {args.scale}", flush=True)
        for lab in args.labs.split(","):
            if args.scale == "codelab" and lab != "transfer":
                raise SystemExit("--scale codelab is the transfer lab's only")
            assignment = codelab_assignment(work) if args.scale == "codelab" else os.path.join(ROOT, "assignments", LABS[lab])
            if args.scale == "codelab":
                os.environ["KERAS_HOME"] = os.path.join(work, "keras")
            found = arrivals(lab, assignment, int(students), span, args.jobs, work)
            print_arrivals(lab + (" (codelab scale)" if args.scale == "codelab" else ""), int(students), span, found)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return 0
    global FULL
    FULL = args.full_training
    work = args.work or tempfile.mkdtemp(prefix="bench-serve-")
    os.makedirs(work, exist_ok=True)
    cache = os.path.join(work, "cache")
    print(f"mix: the demo's scenarios but {', '.join(sorted(LEFT_OUT if FULL else LEFT_OUT | {FULL_TRAINING}))}", flush=True)
    print(f"working in {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    started = time.perf_counter()
    server = Served(work, args.idle + args.burst, args.jobs, cache)
    print(f"server ready (preflight included) in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        grading: list[float] = []
        seconds = idle_latency(server, args.idle, grading) if args.idle else []
        if seconds:
            print(f"idle latency, upload -> scorecard, {len(seconds)} uploads: median {statistics.median(seconds):.1f} s, "
                  f"95th percentile {percentile(seconds, 0.95):.1f} s (max {max(seconds):.1f} s); the server's own part "
                  f"(latency less the grading's own time): median {statistics.median(a - b for a, b in zip(seconds, grading)):.1f} s",
                  flush=True)
        found = burst(server, args.burst, args.clients, args.pollers, args.idle) if args.burst else None
    finally:
        server.stop()
    if found:
        once, none, twice = exactly_once(server.out, found["names"])
        student, admin = found["timings"]["student"], found["timings"]["admin"]
        print(f"burst of {args.burst} from {args.burst} students ({args.clients} clients): sent in {found['sent']:.1f} s; "
              f"graded exactly once {once}, not graded {none}, more than once {twice}")
        print(f"  drain (first upload sent -> last result): {found['drained']:.0f} s ({found['drained'] / args.burst:.1f} s per upload)")
        print(f"  student live part, {len(student)} requests: median {1000 * statistics.median(student):.0f} ms, "
              f"99th percentile {1000 * percentile(student, 0.99):.0f} ms, max {1000 * max(student):.0f} ms")
        print(f"  projector live part, {len(admin)} requests: median {1000 * statistics.median(admin):.0f} ms, "
              f"99th percentile {1000 * percentile(admin, 0.99):.0f} ms, max {1000 * max(admin):.0f} ms")
        print(f"  server process peak RSS {found['peak']['server'] / 2**20:.0f} MiB; with its workers and sandboxes {found['peak']['tree'] / 2**20:.0f} MiB")
        if not args.no_batch:
            seconds = batch_time(work, args.burst, args.jobs, cache)
            print(f"grader grade on the same {args.burst} notebooks: {seconds:.0f} s ({seconds / args.burst:.1f} s per notebook; "
                  f"includes starting its workers and grading the lab's solution and playground for its own preflight)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
