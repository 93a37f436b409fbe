"""The `grader` command. The library raises; only `main` turns errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import time

import grader
from grader.faults import GraderError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="grader", description="Grade Keras codelab notebooks in a sandbox, with trusted checks.")
    top.add_argument("--version", action="version", version=f"grader {grader.__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="check the assignment, then write the student playground and the release record")
    release.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    release.add_argument("--out", required=True, help="folder to write the playground and release.json to")
    release.add_argument("--no-check", action="store_true", help="write them without grading the solution and the playground first")
    release.add_argument("--server", default="", help="the URL of the `grader serve` students submit to: the playground ends with how to")
    _grading_flags(release)

    check = commands.add_parser("check", help="preflight: the manifest, data, weights, strategy and sandbox work, the solution gets full marks and the playground does not")
    check.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    _grading_flags(check)

    grade = commands.add_parser("grade", help="grade submitted notebooks")
    grade.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    grade.add_argument("submissions", nargs="+", help="notebook files, folders of them, or an LMS's download zip")
    grade.add_argument("--out", required=True, help="folder for scorecards, index.html and grades.csv")
    grade.add_argument("--roster", help="the class: a CSV with id,name,email[,section,canvas_id,sis_user_id,sis_login_id,username,file,submitted_at] (kept for later runs)")
    grade.add_argument("--identify", default="auto", choices=("auto", "folder", "roster", "file", "lms"),
                       help="how a file's student is found: its folder, the roster's file column, its name, or the name "
                            "Canvas, Moodle or Blackboard gave it in their download (default: auto)")
    grade.add_argument("--student", help="grade again only this student's submissions (the class pages stay whole)")
    _grading_flags(grade)

    serve = commands.add_parser("serve", help="serve a live workshop: students upload in a browser, scorecards within seconds, the class on one page")
    serve.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    serve.add_argument("--out", default="served", help="folder for the gradebook, the queue, uploads and pages (default: served)")
    serve.add_argument("--roster", help="the class (CSV, as for grade): students get personal links; without one, a workshop code and a name")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; put a TLS proxy in front for a class)")
    serve.add_argument("--port", type=_positive_int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument("--url", default="", help="the address students use, e.g. https://grader.example.org (default: http://HOST:PORT)")
    serve.add_argument("--links", help="write the personal links of roster students who have none to this CSV")
    serve.add_argument("--code", default="", help="the workshop code students join with (default: made at the first start and kept)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest notebook taken, in MiB (default: 20)")
    serve.add_argument("--uploads-per-minute", type=_positive_int, default=4, help="uploads a student may send per minute (default: 4)")
    serve.add_argument("--projector-names", action="store_true",
                       help="the projector's page names the students who just finished, with their scores (default: no names)")
    serve.add_argument("--trusted-proxies", default="", help="addresses of the reverse proxies whose X-Forwarded-* headers are "
                       "believed, comma-separated, e.g. 127.0.0.1 behind a proxy on this host (default: none)")
    serve.add_argument("--lti", help="an LTI 1.3 registration (TOML, README: LTI): students launch the lab from the course, "
                       "the roster comes from it, scores are posted back by themselves")
    _grading_flags(serve)

    links = commands.add_parser("links", help="write students' personal links for `grader serve` as a CSV, or a new instructor's link")
    links.add_argument("out", help="the --out folder of `grader serve`")
    links.add_argument("--url", required=True, help="the address students use, e.g. https://grader.example.org")
    links.add_argument("--file", default="links.csv", help="the CSV to write (default: links.csv; readable by you only)")
    links.add_argument("--student", action="append", default=[], help="a new link for this student (the old one stops working); repeatable")
    links.add_argument("--all", action="store_true", help="new links for every student (every old one stops working)")
    links.add_argument("--admin", action="store_true", help="print a new instructor's link instead (the old one stops working)")
    links.add_argument("--projector", action="store_true", help="print a new projector's link instead (the old one stops working)")

    report = commands.add_parser("report", help="render every page again from the gradebook, without grading")
    report.add_argument("out", help="the --out folder of a grading run")

    export = commands.add_parser("export", help="export grades for a Canvas gradebook import (to grade in Gradescope, see gradescope-autograder)")
    export.add_argument("format", choices=("canvas",))
    export.add_argument("out", help="the --out folder of a grading run")
    export.add_argument("--column", help="canvas: the assignment's column, e.g. 'Transfer learning (1234)' (default: the assignment title)")
    export.add_argument("--points", type=float, help="canvas: the Canvas assignment's points; scores are scaled to them")

    bundle = commands.add_parser("gradescope-autograder", help="write a Gradescope autograder zip that grades one submission inside Gradescope")
    bundle.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    bundle.add_argument("--out", required=True, help="the zip file to write")

    autograde = commands.add_parser("gradescope-run", help=argparse.SUPPRESS)  # what the autograder zip's run_autograder calls
    autograde.add_argument("assignment")
    autograde.add_argument("--submission", default="/autograder/submission")
    autograde.add_argument("--results", default="/autograder/results/results.json")

    override = commands.add_parser("override", help="set a check's points or add a comment for a student (kept through regrading)")
    override.add_argument("out", help="the --out folder of a grading run")
    override.add_argument("--student", required=True, help="the student's id")
    override.add_argument("--check", default="", help="the check's id (none: a comment on the whole submission)")
    override.add_argument("--points", type=float, help="the points the check gets instead of the grader's (0 to the check's points)")
    override.add_argument("--bonus", type=float, help="points given to the whole submission on top of the checks' (a bonus, said as one)")
    override.add_argument("--carry", action="store_true",
                          help="apply the student's overrides, written for an earlier submission, to the one that counts now")
    override.add_argument("--comment", default="", help="what the student reads on their scorecard")
    override.add_argument("--author", default=os.environ.get("USER", ""), help="who says so (default: $USER)")
    override.add_argument("--remove", action="store_true", help="remove the override of this student and check")

    extend = commands.add_parser("extend", help="give students a due date of their own and score the class again (no grading)")
    extend.add_argument("out", help="the --out folder of a grading run")
    extend.add_argument("--student", help="the student's id")
    extend.add_argument("--due", help="their due date and time, e.g. 2026-12-05T23:59:00+00:00 (with --student)")
    extend.add_argument("--remove", action="store_true", help="the student's due date is the class's again (with --student)")
    extend.add_argument("--file", help="a CSV with the columns student,due: one extension a row (an empty due removes it)")
    extend.add_argument("--author", default=os.environ.get("USER", ""), help="who gives it (default: $USER)")

    publish = commands.add_parser("publish", help="publish the grades: checks shown to students after_published are shown from now")
    publish.add_argument("out", help="the --out folder of a grading run (or of `grader serve`)")
    publish.add_argument("--undo", action="store_true", help="take the publication back: those checks are held again")
    publish.add_argument("--author", default=os.environ.get("USER", ""), help="who publishes (default: $USER)")

    post = commands.add_parser("post-grades", help="post the class's scores to the course's LMS (LTI 1.3 Assignment and Grade Services)")
    post.add_argument("out", help="the --out folder of a grading run")
    post.add_argument("--lti", required=True, help="the LTI 1.3 registration (TOML, README: LTI), with lineitems and memberships "
                      "unless the lab was launched from the course before")
    post.add_argument("--public-key", action="store_true", help="print the tool's public key (a JWK to paste into the LMS's "
                      "registration) and post nothing")

    feedback = commands.add_parser("feedback", help="one folder (or zip) per student with their scorecard and notebook, ready to hand back")
    feedback.add_argument("out", help="the --out folder of a grading run")
    feedback.add_argument("--zip", action="store_true", help="one zip file per student instead of a folder")

    new = commands.add_parser("new", help="make an assignment from a codelab's playground and solution notebooks")
    new.add_argument("folder", help="the new assignment's folder")
    new.add_argument("--playground", required=True, help="the codelab's playground notebook")
    new.add_argument("--solution", required=True, help="the codelab's solution notebook")
    new.add_argument("--data", help="a glob of the lab's data files (default: \"demo\", which needs a lab module)")
    new.add_argument("--weights", help="the pretrained base's weights file (default: \"demo\")")
    new.add_argument("--image-size", type=_positive_int, help="the data's image size (default: read off the notebook)")
    new.add_argument("--threshold", type=float, help="the accuracy threshold to start from (default: chance level, until `grader check` suggests one)")

    calibrate = commands.add_parser("calibrate", help="grade the lab's population of answers (its module's POPULATION) and show how "
                                    "the verdicts and accuracies lie against the checks and the threshold")
    calibrate.add_argument("assignment", help="folder with assignment.toml and the source notebook")
    calibrate.add_argument("--out", default="calibration", help="folder for the answers and their grading (default: calibration)")
    _grading_flags(calibrate)

    cache = commands.add_parser("cache", help="show or clear the feature cache of the fast path")
    cache.add_argument("--cache-dir", help="the cache folder (default: $GRADER_CACHE or ~/.cache/keras-grader/features)")
    cache.add_argument("--clear", action="store_true", help="delete every cached entry")

    demo = commands.add_parser("demo", help="release the lab, make sample submissions, grade them")
    demo.add_argument("--out", default="demo-out", help="folder for everything the demo writes (default: demo-out)")
    demo.add_argument("--assignment", default=None, help=argparse.SUPPRESS)  # default: the series' demo (labs.DEMO)
    _grading_flags(demo)
    return top


def _grading_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data", help="glob of the lab's data files (default: the manifest's [data] pattern)")
    command.add_argument("--weights", help="the pretrained base's no-top weights file, e.g. the one Keras downloads (default: the manifest's)")
    command.add_argument("--no-sandbox", action="store_true", help="run student code without isolation if bubblewrap cannot (scorecards say so)")
    command.add_argument("--quiet", action="store_true", help="no progress lines")
    command.add_argument("--cache-dir", help="feature cache folder (default: $GRADER_CACHE or ~/.cache/keras-grader/features)")
    command.add_argument("--no-cache", action="store_true", help="train every model in full instead of on cached base outputs")
    command.add_argument("--jobs", type=_positive_int, default=0, help="notebooks graded at once (default: from cores and memory)")
    command.add_argument("--regrade", action="store_true", help="grade again what the gradebook already holds")
    command.add_argument("--umask", type=lambda text: int(text, 8), help="the umask of the files written, e.g. 027 (default: the shell's, usually 022)")
    command.add_argument("--cluster", type=_cluster_address, metavar="ADDRESS",
                         help="grade on a Dask cluster: its scheduler's address (tcp://host:8786), or local:N for N worker processes here")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the grading workers import TensorFlow, quietly
    if getattr(args, "umask", None) is not None:
        os.umask(args.umask)
    try:
        return COMMANDS[args.command](args)
    except GraderError as error:
        print(f"grader: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("grader: interrupted; finished scorecards are kept", file=sys.stderr)
        return 130


def _release(args) -> int:
    from grader.config import manifest, release

    loaded = manifest.load(args.assignment)
    built, playground = release.build(loaded)
    if not args.no_check:
        _preflight(loaded, args)
    paths = release.write(built, playground, args.out, server=args.server)
    print(f"playground: {paths['playground']}\nrelease record: {paths['record']}")
    return 0


def _options(args):
    from grader.run import Options

    return Options(
        out_dir=os.path.abspath(args.out),
        data=args.data,
        weights=args.weights,
        allow_unsandboxed=args.no_sandbox,
        quiet=args.quiet,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        jobs=args.jobs,
        regrade=args.regrade,
        roster=getattr(args, "roster", None),
        identify=getattr(args, "identify", "auto"),
        student=getattr(args, "student", None),
        cluster=args.cluster,
    )


def _check(args) -> int:
    from grader.config import manifest

    _preflight(manifest.load(args.assignment), args, suggest=True)
    return 0


def _preflight(loaded, args, suggest: bool = False) -> None:
    """Run the preflight in a scratch folder; print what passed (a failure raises). With
    `suggest`, also grade the playground's starting code and print the accuracy threshold
    that grading the pair suggests (grader/calibrate.py)."""
    import dataclasses
    import tempfile

    from grader import batch, calibrate

    if suggest:  # a threshold is suggested from where training ends, not where it could stop
        loaded = dataclasses.replace(loaded, settled_margin=-1.0)
    with tempfile.TemporaryDirectory(prefix="grader-check-") as scratch:
        options = _options(argparse.Namespace(**{**vars(args), "out": scratch, "regrade": True, "quiet": True}))
        found = batch.check(loaded, options)
        print(f"preflight of {loaded.name}: passed")
        for line in found.lines():
            print(f"  {line}")
        suggestion = calibrate.measure(loaded, found.solution, options) if suggest else None
    for line in suggestion.lines() if suggestion else ():
        print(f"  {line}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _cluster_address(text: str) -> str:
    from grader.scale.cluster import check_address

    try:
        return check_address(text)
    except GraderError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _grade(args) -> int:
    from grader import batch
    from grader.config import manifest

    _summarise(batch.grade(manifest.load(args.assignment), args.submissions, _options(args)))
    return 0


def _demo(args) -> int:
    from grader import batch
    from grader.config import labs, manifest, release, scenarios
    from grader.store.storage import write_atomic
    from labs import DEMO  # the series' demo assignment: the core names no lab

    loaded = manifest.load(args.assignment or os.path.join(ROOT, "assignments", DEMO))
    built, playground = release.build(loaded)
    out = os.path.abspath(args.out)
    release.write(built, playground, os.path.join(out, "release"))
    folder = os.path.join(out, "submissions")
    made = scenarios.make(built, playground, table=labs.scenarios(loaded))
    for name, content in made.items():
        write_atomic(os.path.join(folder, name), content)
    print(f"released {loaded.name} to {os.path.join(out, 'release')}; grading {len(made)} sample submissions from {folder}", flush=True)
    _summarise(batch.grade(loaded, [folder], _options(argparse.Namespace(**{**vars(args), "out": os.path.join(out, "graded")}))))
    return 0


def _calibrate(args) -> int:
    from grader import calibrate
    from grader.config import labs, manifest
    from grader.faults import ManifestError

    loaded = manifest.load(args.assignment)
    answers = labs.population(loaded)
    if not answers:
        raise ManifestError(f"{loaded.name}'s lab module declares no POPULATION of answers to calibrate on",
                            hint="add POPULATION = [grader.config.population.Answer(...), ...] to its lab module (docs/authoring.md)")
    options = _options(args)
    found = calibrate.calibrate(loaded, answers, options.out_dir, **{name: getattr(options, name) for name in
                                 ("data", "weights", "allow_unsandboxed", "cache_dir", "use_cache", "jobs", "regrade", "cluster")})
    print("\n".join(found.lines(answers)))
    return 1 if found.disagreements else 0


def _summarise(graded) -> None:
    for row in graded.view.rows:
        if row.final is not None:
            shown = f"{row.final:g}/{row.max_score:g}"
        elif row.counted is not None and row.counted.result is not None:
            shown = f"{row.status}: {row.counted.result.reason}"
        else:
            shown = row.status
        print(f"  {row.student:32} {shown}")
    for note in graded.notes:
        print(f"note: {note}")
    print(f"class report: {graded.paths['index']}\ngrades: {graded.paths['grades']}")


def _serve(args) -> int:
    from grader.config import manifest
    from grader.serve import start, web

    settings = web.ServerOptions(
        host=args.host, port=args.port, url=args.url, max_upload_mb=args.max_upload_mb, uploads_per_minute=args.uploads_per_minute,
        code=args.code, links=args.links, trusted_proxies=args.trusted_proxies, projector_names=args.projector_names,
        lti=args.lti or "",
    )
    start.run(manifest.load(args.assignment), _options(args), settings)
    return 0


def _links(args) -> int:
    from grader.reports import classreport
    from grader.serve import start, uploads
    from grader.store import gradebook

    out = os.path.abspath(args.out)
    if not os.path.isfile(os.path.join(out, uploads.DATABASE)):
        raise GraderError(f"{out} is not the folder of a `grader serve`", hint="pass the --out folder the server was started with")
    queue = uploads.Queue(out)
    if args.admin:
        print(f"the instructor's page (the old link stops working): {args.url.rstrip('/')}/a/{queue.issue_link('instructor', uploads.ADMIN)}")
        return 0
    if args.projector:
        print(f"the projector's page (the old link stops working): {args.url.rstrip('/')}/p/{queue.issue_link('projector', uploads.PROJECTOR)}")
        return 0
    facts = classreport.load_facts(out)
    book = gradebook.Gradebook(os.path.join(out, "gradebook.sqlite"))
    try:
        students = book.students(facts.name)
    finally:
        book.close()
    unknown = [s for s in args.student if s not in students]
    if unknown:
        raise GraderError(f"not in the roster: {', '.join(unknown)}", hint="pass the roster to `grader serve --roster` first")
    renew = set(students) if args.all else (set(args.student) or None)
    count = start.write_links(queue, students, args.url, args.file, renew)
    print(f"wrote {count} personal link(s) to {args.file}" + ("" if count else " (every student has one: --student ID or --all makes new ones)"))
    return 0


def _report(args) -> int:
    from grader import batch

    graded = batch.rerender(os.path.abspath(args.out))
    print(f"class report: {graded.paths['index']}\ngrades: {graded.paths['grades']}")
    return 0


def _class(out: str):
    """The class as the gradebook of an output folder holds it."""
    from grader.reports import classreport, classview
    from grader.store import gradebook

    facts = classreport.load_facts(out)
    book = gradebook.Gradebook(os.path.join(out, "gradebook.sqlite"))
    try:
        return classview.build(book, facts)
    finally:
        book.close()


def _export(args) -> int:
    from grader.reports import exports
    from grader.store.storage import write_atomic

    view = _class(args.out)
    text, left_out = exports.canvas_csv(view, args.column or view.title, args.points)
    path = os.path.join(args.out, "exports", "canvas.csv")
    write_atomic(path, text)
    print(f"wrote {path}")
    if left_out:
        print(f"left out of the Canvas import (no canvas_id in the roster): {', '.join(left_out)}")
        return 1
    return 0


def _override(args) -> int:
    """The instructor's word on one student's submission: a check's points (within the
    check's), a bonus on the whole, a comment. It belongs to the submission that counts
    when it is written; --carry moves the student's word to the one that counts now."""
    import dataclasses
    import time as clock

    from grader import batch
    from grader.reports import classreport, classview
    from grader.store import gradebook

    out = os.path.abspath(args.out)
    facts = classreport.load_facts(out)
    bounds = {check_id: points for check_id, _, points in facts.checks}
    if args.check and args.check not in bounds:
        raise GraderError(f"no check {args.check!r} in {facts.name}", hint=f"its checks are {', '.join(sorted(bounds))}")
    if not (args.remove or args.carry) and args.points is None and args.bonus is None and not args.comment:
        raise GraderError("an override needs --points, --bonus, --comment, --carry or --remove")
    if args.points is not None and not args.check:
        raise GraderError("--points needs --check: points are set per check", hint="points for the whole submission are a --bonus")
    if args.bonus is not None and args.check:
        raise GraderError("--bonus is on the whole submission: leave out --check", hint="a check's points are set with --points")
    if args.points is not None and not 0 <= args.points <= bounds[args.check]:
        raise GraderError(f"{args.check} is worth 0 to {bounds[args.check]:g} points, not {args.points:g}",
                          hint="more than a check's points is a --bonus on the whole submission")
    if args.bonus is not None and args.bonus < 0:
        raise GraderError(f"a bonus is more points, not {args.bonus:g}", hint="take points from a check with --points")
    book = gradebook.Gradebook(os.path.join(out, "gradebook.sqlite"))
    try:
        row = next((r for r in classview.build(book, facts).rows if r.student == args.student), None)
        if row is None:
            raise GraderError(f"no student {args.student!r} in this class")
        attempt = row.counted or (row.attempts[-1] if row.attempts else None)
        sha256 = attempt.stored.sha256 if attempt is not None else ""
        if args.remove:
            book.remove_override(facts.name, args.student, args.check)
            said = f"removed the override of {args.student}"
        elif args.carry:
            for old in row.set_aside:
                book.set_override(facts.name, dataclasses.replace(old, sha256=sha256))
            said = f"applied {len(row.set_aside)} override(s) of {args.student} to {attempt.file if attempt else 'no submission'}"
        else:
            points = args.points if args.points is not None else args.bonus
            book.set_override(facts.name, gradebook.Override(args.student, args.check, points, args.comment, args.author, clock.time(), sha256))
            said = f"set an override for {args.student}" + (f" on {attempt.file}" if attempt else "")
    finally:
        book.close()
    graded = batch.rerender(out)
    print(f"{said}; class report: {graded.paths['index']}")
    return 0


def _extend(args) -> int:
    """Students' own due dates, kept in the gradebook; the class is scored again from what
    it holds (the late policy is applied to stored results: nothing is graded again)."""
    import csv
    import time as clock

    from grader import batch
    from grader.reports import classreport
    from grader.store import gradebook

    if bool(args.file) == bool(args.student) or (args.student and bool(args.due) == args.remove):
        raise GraderError("give --student with --due or --remove, or a --file of extensions")
    out = os.path.abspath(args.out)
    facts = classreport.load_facts(out)
    given: dict[str, float | None] = {}
    if args.file:
        try:
            with open(args.file, newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as error:
            raise GraderError(f"cannot read {args.file}: {error.strerror}") from None
        for number, row in enumerate(rows, start=2):
            student = (row.get("student") or "").strip()
            if not student:
                raise GraderError(f"{args.file}, line {number}: no student", hint="its columns are student,due")
            given[student] = _moment(row.get("due") or "", f"{args.file}, line {number}")
    else:
        given[args.student] = None if args.remove else _moment(args.due, "--due")
    began = clock.monotonic()
    book = gradebook.Gradebook(os.path.join(out, "gradebook.sqlite"))
    try:
        known = {s.student for s in book.submissions(facts.name)} | set(book.students(facts.name))
        unknown = sorted(set(given) - known)
        if unknown:
            raise GraderError(f"no student {', '.join(map(repr, unknown))} in this class")
        for student, due in given.items():
            book.set_extension(facts.name, student, due, args.author)
    finally:
        book.close()
    graded = batch.rerender(out)
    print(f"{len(given)} due date(s) set; the class scored again in {clock.monotonic() - began:.1f} s, nothing graded; "
          f"class report: {graded.paths['index']}")
    return 0


def _moment(text: str, where: str) -> float | None:
    """An ISO 8601 date and time (UTC if it names no zone) as seconds since the epoch; None if empty."""
    import datetime

    if not text.strip():
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip().upper())
    except ValueError:
        raise GraderError(f"{where}: {text!r} is not a date and time", hint="write it as 2026-12-05T23:59:00+00:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).timestamp()


def _feedback(args) -> int:
    import time as clock

    from grader.reports import feedback, visibility

    view = _class(args.out)
    made = feedback.write(view, os.path.abspath(args.out), as_zip=args.zip)
    print(f"wrote feedback for {len(made)} student(s) under {os.path.join(args.out, 'feedback')}")
    now = clock.time()
    held = sum(bool(visibility.of_row(view, row, now).checks) for row in view.rows if row.counted is not None)
    if held:
        print(f"{held} student(s)' feedback holds checks back as of now (their scorecards say which and until when); "
              f"export it again after the due date, or after `grader publish {args.out}`, to show them")
    return 0


def _publish(args) -> int:
    """Publish the grades (or take them back): the gradebook says so, the pages show it."""
    from grader import batch
    from grader.reports import classreport, visibility
    from grader.store import gradebook

    out = os.path.abspath(args.out)
    facts = classreport.load_facts(out)
    book = gradebook.Gradebook(os.path.join(out, "gradebook.sqlite"))
    try:
        book.set_published(facts.name, not args.undo, args.author)
    finally:
        book.close()
    waiting = [c for c, _, _ in facts.checks if facts.rules.visibility_of(c) == "after_published"]
    if args.undo:
        print(f"the grades are no longer published: {len(waiting)} check(s) held from students again")
    else:
        print(f"the grades are published: students now see {len(waiting)} check(s) shown after publishing, and their whole score")
    if visibility.restricted(facts.rules, [c for c, _, _ in facts.checks]) and os.path.isdir(os.path.join(out, "feedback")):
        print(f"feedback already exported shows what was shown then: run `grader feedback {args.out}` again")
    if os.path.exists(os.path.join(out, "index.html")):
        batch.rerender(out)
    return 0


def _post_grades(args) -> int:
    """Post the class's scores to the LMS: the roster read first (NRPS) to know each student's
    user id there; a score is posted once per change, whatever is run again."""
    import json

    from grader.reports import classreport
    from grader.serve import lti

    out = os.path.abspath(args.out)
    registration = lti.Registration.load(args.lti)
    facts = classreport.load_facts(out)
    book_path = os.path.join(out, "gradebook.sqlite")
    key = lti.tool_key(out, registration.key)
    if args.public_key:
        print(json.dumps(lti.public_jwks(key)["keys"][0]))
        return 0
    poster = lti.Poster(registration, key, book_path, facts.name, facts.title)
    try:
        memberships = lti.context_of(book_path, facts.name).get("memberships") or registration.memberships
        if memberships:
            try:
                learners, staff = lti.sync_roster(poster.services, memberships, book_path, facts.name, registration.issuer, match_known=True)
                print(f"the course's roster: {learners} learner(s), {staff} staff (never posted)")
            except (lti.PlatformDown, lti.Refused) as error:
                print(f"the course's roster could not be read from {memberships} ({error}): the students already known are posted",
                      file=sys.stderr)
        else:
            print("no roster address (a launch from the course gives it, or [lti] memberships): students already known are posted")
        made = poster.enqueue(_class(out))
        counts = poster.deliver()
    finally:
        poster.close()
    print(f"scores: {made} new to post; {counts['posted']} posted, {counts['refused']} refused by the LMS, {counts['waiting']} waiting")
    if counts["waiting"]:
        print("the LMS did not take every score now: run the same command again later (nothing is posted twice)")
    if counts["refused"]:
        print("the LMS refused some scores for good (its answers are in the gradebook's lti_posts): see the warnings above")
    return 1 if counts["waiting"] or counts["refused"] else 0


def _new(args) -> int:
    from grader.config import importer

    made = importer.new(args.folder, args.playground, args.solution, data=args.data, weights=args.weights,
                        image_size=args.image_size, threshold=args.threshold)
    print("\n".join(made.lines()))
    print(f"next: grader check {args.folder}")
    return 0


def _gradescope_autograder(args) -> int:
    from grader import gradescope
    from grader.config import manifest

    path = gradescope.bundle(manifest.load(args.assignment), os.path.abspath(args.out))
    print(f"wrote {path}: upload it as the assignment's autograder in Gradescope (setup.sh installs the grader)")
    return 0


def _gradescope_run(args) -> int:
    from grader import gradescope
    from grader.config import manifest

    gradescope.run(manifest.load(args.assignment), args.submission, args.results)
    return 0


def _cache(args) -> int:
    from grader.context import default_cache_dir
    from reference.cache import FeatureCache

    store = FeatureCache(args.cache_dir or default_cache_dir())
    if args.clear:
        print(f"removed {store.clear()} cached feature set(s) from {store.directory}")
        return 0
    entries = store.entries()
    total = sum(e["bytes"] for e in entries)
    print(f"{store.directory}: {len(entries)} feature set(s), {total / 2**20:.1f} MiB (bound {store.max_bytes / 2**30:.0f} GiB, least recently used go first)")
    for entry in entries:
        print(f"  {entry['key']}  {entry['bytes'] / 2**20:8.1f} MiB  last used {time.strftime('%Y-%m-%d %H:%M', time.localtime(entry['used']))}")
    return 0


COMMANDS = {
    "release": _release, "check": _check, "grade": _grade, "demo": _demo, "cache": _cache, "report": _report,
    "export": _export, "override": _override, "extend": _extend, "serve": _serve, "links": _links, "feedback": _feedback, "publish": _publish, "post-grades": _post_grades, "new": _new,
    "gradescope-autograder": _gradescope_autograder, "gradescope-run": _gradescope_run, "calibrate": _calibrate,
}
