"""What a student sees of their result, and when: each check's visibility, Gradescope's four
values honoured the same way by the scorecards handed back, the workshop's pages and the
Gradescope bundle.

- `visible`: always;
- `after_due_date`: once the student's own due date has passed (the class's, or their extension);
- `after_published`: once the instructor has published the grades (`grader publish OUT`);
- `hidden`: never (it still counts).

The score as a whole is shown once every check is, or once the grades are published. Until
then a student's page shows the checks it may, and says how many it holds back, their
points, and until when: it never reads as if everything passed while something is held.
The instructor's pages show everything, each held check marked with when students see it.
"""

from __future__ import annotations

import dataclasses
import os

from grader.config.manifest import ClassRules
from grader.reports import report
from grader.reports.wording import when
from grader.results import SubmissionResult

WHEN = {
    "after_due_date": "until the due date",
    "after_published": "until your instructor publishes the grades",
    "hidden": "from students (they count in the score)",
}


def shown(setting: str, due: float | None, published: bool, now: float) -> bool:
    """Whether a check with this visibility is shown to a student now."""
    if setting == "visible":
        return True
    if setting == "after_due_date":
        return due is not None and now >= due
    if setting == "after_published":
        return published
    return False


@dataclasses.dataclass(frozen=True)
class Held:
    """What a student's page holds back now."""

    checks: tuple[tuple[str, str, float, str], ...] = ()  # (id, title, points, visibility) of each check not shown
    total: bool = True  # the score as a whole is shown
    due: float | None = None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(check_id for check_id, _, _, _ in self.checks)

    @property
    def points(self) -> float:
        return sum(points for _, _, points, _ in self.checks)

    def sentences(self) -> list[str]:
        """One sentence per reason a check is held: how many, worth what, until when."""
        said = []
        for setting in ("after_due_date", "after_published", "hidden"):
            held = [(title, points) for _, title, points, own in self.checks if own == setting]
            if not held:
                continue
            count = f"{len(held)} check{'s' if len(held) > 1 else ''}"
            worth = f"{sum(p for _, p in held):g} point{'' if sum(p for _, p in held) == 1 else 's'}"
            until = WHEN[setting]
            if setting == "after_due_date" and self.due is not None:
                until += f" ({when(self.due)})"
            said.append(f"{count} ({worth}) {'is' if len(held) == 1 else 'are'} hidden {until}.")
        return said


def held(rules: ClassRules, checks: tuple[tuple[str, str, float], ...], due: float | None, published: float | None,
         now: float) -> Held:
    """What a student whose due date is `due` does not see now, of checks (id, title, points)."""
    kept = tuple((check_id, title, points, rules.visibility_of(check_id)) for check_id, title, points in checks
                 if not shown(rules.visibility_of(check_id), due, published is not None, now))
    return Held(kept, total=not kept or published is not None, due=due)


def of_row(view, row, now: float) -> Held:
    """What the student of `row`, in the class `view` (a ClassView), does not see now."""
    return held(view.rules, view.checks, row.due, view.published, now)


def restricted(rules: ClassRules, check_ids) -> bool:
    """Whether any check is ever held from a student (else every page is the instructor's as it is)."""
    return any(rules.visibility_of(check_id) != "visible" for check_id in check_ids)


MEASURES_TRAINING = ("validation_accuracy",)  # checks whose verdict is the grader's training: held, it is held too


def for_student(result: SubmissionResult, held: Held, points: dict | None = None) -> SubmissionResult:
    """The result as the student may see it now: the held checks left out, with what they
    rest on (the grader's training, where a held check judges it); the score that of the
    checks shown (with the instructor's `points` on them, check id -> points), unless the
    score as a whole is shown."""
    if not held.checks:
        return result
    kept = tuple(c for c in result.checks if c.id not in held.ids)
    gone = [c for c in result.checks if c.id in held.ids]
    judged = any("threshold" in c.evidence or c.check.startswith(MEASURES_TRAINING) for c in gone)
    seen = dataclasses.replace(result, checks=kept, training={} if judged else result.training)
    if held.total:
        return seen
    points = points or {}
    return dataclasses.replace(seen, score=round(sum(points.get(c.id, c.score) for c in kept), 2),
                               max_score=round(sum(c.max_score for c in kept), 2))


def for_student_about(about: dict | None, held: Held) -> dict | None:
    """The class's facts on a scorecard as the student may see them now: the instructor's
    points on a held check left out, and the final score while the whole is held."""
    if about is None or not held.checks:
        return about
    seen = dict(about)
    seen["overrides"] = [o for o in about["overrides"] if o.get("id") not in held.ids]
    seen["points"] = {k: v for k, v in about["points"].items() if k not in held.ids}
    seen["marks"] = {}
    if not held.total:
        seen.update(final=None, bonus=0)
    return seen



def scorecard(result: SubmissionResult, folder: str, reference: SubmissionResult | None, about: dict | None, held: Held) -> str:
    """The scorecard of the submission in `folder` as its student may see it now (a page
    that cannot be rendered: the fallback page, of the checks shown, as a batch writes it)."""
    seen = for_student(result, held, (about or {}).get("points"))
    try:
        return report.render_scorecard(seen, reference, os.path.exists(os.path.join(folder, "notebook.html")),
                                       for_student_about(about, held), held)
    except Exception as error:  # noqa: BLE001 - a rendering bug costs a page its looks, never the export or the server
        return report.page("fallback.html.j2", r=seen, error=f"{type(error).__name__}: {error}")


def student_json(result: SubmissionResult, held: Held) -> str:
    """result.json as the student may see it now."""
    import json

    return json.dumps(for_student(result, held).to_json(), indent=2, sort_keys=True) + "\n"
