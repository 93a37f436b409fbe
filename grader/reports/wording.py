"""What the pages say in words: how a submission was graded, what happened to a cell.

result.json keeps the raw facts (`stopped_by`, the strategy's class, ...); these
functions turn them into sentences a student can read. Facts they do not know are left
to result.json, never shown raw.
"""

from __future__ import annotations

import datetime

from grader.config import cells as cell_rules

MATCHED_BY = {
    "ids": "found by the cell ids the release recorded",
    "headings": "found by their [WORK REQUIRED] headings",
    "code": "found as the cell that assigns the model",
    "none": "none found",
}
STOPPED_BY = {
    None: "ended normally",
    "cell_timeout": "was stopped: a cell used up its CPU time",
    "run_timeout": "was stopped: it used up its CPU time in all",
    "wall_clock": "was stopped: a cell waited too long without computing",
    "run_wall_clock": "was stopped: it waited too long without computing",
    "host_busy": "was stopped: the grading machine was too busy (not the student's doing)",
    "disk_full": "was stopped: it filled its disk",
    "tampered": "ended, but left files the grader could not trust",
    "memory": "was stopped: it reached its memory limit",
    "processes": "was stopped: it tried to start too many processes",
    "cpu": "was stopped: it used up its CPU time",
}
ROLES = {"answer": "answer", "added": "added by the student", "added above": "added by the student above the answer",
         "not run": "not run", "replaced": "the lab's cells", "changed locked cell": "changed locked cell"}
FAST_PATH = "fast path: head trained on cached outputs of "


def provenance(facts: dict) -> list[tuple[str, str]]:
    """(term, sentence) pairs saying how a submission was graded, from its provenance."""
    said = [
        ("Answer cells", _capitalised(MATCHED_BY.get(facts.get("matched_by"), ""))),
        ("Sandbox", _sandbox(facts)),
        ("Training", _training(facts)),
        ("Settings", _settings(facts)),
        ("Dataset", str(facts.get("dataset") or "")),
        ("Pretrained weights", str(facts.get("weights") or "")),
        ("Grader", _grader(facts)),
    ]
    return [(term, sentence) for term, sentence in said if sentence]


def _sandbox(facts: dict) -> str:
    unsandboxed = facts.get("sandbox") is False
    if "sandbox_seconds" not in facts:
        return "The student's code ran without a sandbox (--no-sandbox)." if unsandboxed else ""
    subject = "The run, without a sandbox (--no-sandbox)," if unsandboxed else "The sandbox run"
    took = f" took {_seconds(facts['sandbox_seconds'])}" if _is_number(facts["sandbox_seconds"]) else " ran"
    if _is_number(facts.get("sandbox_cpu_seconds")):
        took += f" ({_seconds(facts['sandbox_cpu_seconds'])} of CPU time)"
    ended = STOPPED_BY.get(facts.get("stopped_by"), "was stopped")
    return f"{subject}{took} and {ended}." if "stopped_by" in facts else f"{subject}{took}."


def _training(facts: dict) -> str:
    path = facts.get("training")
    if not path or path == "not trained":
        return "The grader did not train this model." if path else ""
    path = str(path)
    if path.startswith(FAST_PATH):
        path = f"fast path: only the head was trained, on cached outputs of the frozen base ({path[len(FAST_PATH):]})"
    where = ", ".join(w for w in (_device(facts.get("device")), _replicas(facts.get("replicas")), _strategy(facts.get("strategy"))) if w)
    took = f", in {_seconds(facts['training_seconds'])}" if _is_number(facts.get("training_seconds")) else ""
    return f"Trained {where + ', ' if where else ''}{path}{took}."


def _device(device) -> str:
    return {"CPU": "on the CPU", "GPU": "on GPUs", "TPU": "on a TPU"}.get(device, f"on {device}" if device else "")


def _replicas(replicas) -> str:
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        return ""
    return "one replica" if replicas == 1 else f"{replicas} replicas"


def _strategy(strategy) -> str:
    """The tf.distribute strategy's public name; the default strategy's private class is not news."""
    name = str(strategy or "").split(" ", 1)[0]
    return f"with {name}" if name and not name.startswith("_") else ""


def _settings(facts: dict) -> str:
    parts = []
    if _is_number(facts.get("epochs")):
        parts.append(f"{facts['epochs']} epochs")
    if _is_number(facts.get("batch_size")):
        parts.append(f"batches of {facts['batch_size']}")
    if _is_number(facts.get("seed")):
        parts.append(f"seed {facts['seed']}")
    if _is_number(facts.get("image_size")):
        parts.append(f"images of {facts['image_size']}×{facts['image_size']} pixels")
    return _capitalised(", ".join(parts)) + ("." if parts else "")


def _grader(facts: dict) -> str:
    version = f"Version {facts['grader_version']}" if facts.get("grader_version") else ""
    took = f"grading took {_seconds(facts['seconds'])}" if _is_number(facts.get("seconds")) else ""
    return _capitalised("; ".join(p for p in (version, took) if p)) + ("." if version or took else "")


def cell_label(cell: dict) -> str:
    """What a cell is and what happened to it, e.g. "answer · raised ValueError"."""
    role = cell.get("role")
    return f"{ROLES.get(role, str(role or 'cell'))} · {cell_outcome(cell)}"


def cell_outcome(cell: dict) -> str:
    """What happened to a cell. Whether an answer holds code of the student's is the
    pipeline's to say (`unanswered`: its code is the playground's, placeholders aside);
    without it, a placeholder still in the cell is mentioned, not judged."""
    status = cell.get("status")
    if status == "ok":
        if cell.get("unanswered"):
            return "ran, but holds only the playground's placeholder"
        if "unanswered" not in cell and cell_rules.has_placeholder(str(cell.get("source") or "")):
            return "ran; the placeholder is still in it"
        return "ran without error"
    if status == "error":
        error = cell.get("error") if isinstance(cell.get("error"), dict) else {}
        return f"raised {error.get('name') or 'an error'}"
    return str(status or "not run")


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def when(stamp: float) -> str:
    """A moment as every page writes it."""
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
