"""Label Studio's task format, both ways: a project's items as tasks carrying every annotator's standing
answer as an annotation (choices for classes and labels, two numbers for the plane), with the labelling
config that describes them; and a Label Studio JSON export read back as answers.

Written by hand: the format is plain JSON, and Label Studio's SDK (which tests/test_label.py uses to
validate what is written here) pulls in a large tree of pinned dependencies that trilla does not need.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from trilla.errors import TrillaError
from trilla.label.project import Project


def labeling_config(project: Project, media: str) -> str:
    """The Label Studio labelling config (XML) for this project's items of one media kind."""
    tag = "Image" if media == "image" else "Audio"
    if project.kind == "plane":
        controls = "".join(f'<Number name={quoteattr(axis)} toName="item" min="-1" max="1" step="0.0001"/>' for axis in project.axes)
    else:
        choice = "multiple" if project.kind == "multilabel" else "single"
        options = "".join(f"<Choice value={quoteattr(name)}/>" for name in project.classes)
        controls = f'<Choices name="label" toName="item" choice="{choice}">{options}</Choices>'
    return f'<View><{tag} name="item" value="${media}"/>{controls}</View>'


def _result(project: Project, value: Any) -> list[dict]:
    if project.kind == "plane":
        return [{"from_name": axis, "to_name": "item", "type": "number", "value": {"number": float(v)}} for axis, v in zip(project.axes, value)]
    choices = value if isinstance(value, list) else [value]
    return [{"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": list(choices)}}]


def to_labelstudio(project: Project) -> list[dict]:
    """One task per item: its file (as `image` or `audio`), trilla's item id, and an annotation per
    annotator with their standing answer."""
    standing = project.standing()
    times = {(r.item, r.annotator): r.created for r in project.answers().itertuples() if not r.undone}
    tasks = []
    for row in project.items().itertuples():
        annotations = []
        for answer in standing[standing["item"] == row.item].itertuples():
            when = datetime.fromtimestamp(times.get((row.item, answer.annotator), time.time()), timezone.utc).isoformat()
            annotations.append({"completed_by": {"email": answer.annotator}, "created_at": when, "result": _result(project, answer.value)})
        tasks.append({"id": int(row.item), "data": {row.media: row.path, "trilla_item": int(row.item)}, "annotations": annotations})
    return tasks


def from_labelstudio(project: Project, path: Path) -> tuple[int, list[str]]:
    """Answers from a Label Studio export (tasks matched by trilla's item id, else by file path); how many
    were added, and what was left out and why."""
    try:
        tasks = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise TrillaError(f"{path} is not a readable Label Studio JSON export: {err}") from None
    if not isinstance(tasks, list):
        raise TrillaError(f"{path}: a Label Studio export is a list of tasks")
    items = project.items()
    by_path = dict(zip(items["path"], items["item"]))
    added, skipped = 0, []
    for number, task in enumerate(tasks):
        data = task.get("data", {}) if isinstance(task, dict) else {}
        item = data.get("trilla_item") or by_path.get(data.get("image") or data.get("audio"))
        if item is None or int(item) not in set(items["item"]):
            skipped.append(f"task {task.get('id', number) if isinstance(task, dict) else number}: no such item in {project.name}")
            continue
        for annotation in task.get("annotations") or []:
            who = annotation.get("completed_by")
            annotator = str(who.get("email") or who.get("id")) if isinstance(who, dict) else str(who)
            try:
                value = _value(project, annotation.get("result") or [])
                project.answer(int(item), annotator, value)
                added += 1
            except ValueError as err:
                skipped.append(f"task {task.get('id', number)}, {annotator}: {err}")
    return added, skipped


def _value(project: Project, result: list[dict]) -> Any:
    if project.kind == "plane":
        numbers = {r.get("from_name"): r.get("value", {}).get("number") for r in result if r.get("type") == "number"}
        if any(numbers.get(axis) is None for axis in project.axes):
            raise ValueError(f"the annotation needs a number for each of {', '.join(project.axes)}")
        return [numbers[axis] for axis in project.axes]
    choices = [c for r in result if r.get("type") == "choices" for c in r.get("value", {}).get("choices", [])]
    if project.kind == "classes":
        if len(choices) != 1:
            raise ValueError(f"the annotation chooses {len(choices)} classes, not one")
        return choices[0]
    return choices
