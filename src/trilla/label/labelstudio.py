"""Label Studio, both ways, as a real Label Studio server (1.23) takes it.

Out: a project's items as tasks whose media Label Studio can open (its local-files storage: each task
holds `/data/local-files/?d=PATH` under a document root the export names), every annotator's standing
answer as an annotation (choices for classes and labels, two numbers for the plane), the labelling config
per kind of media, and the users to create first. Label Studio refuses an annotation by someone who is
not one of its users, and its users are e-mail addresses, so each trilla annotator gets a stable one
(`email_of`): a name that is an address stays itself, any other becomes `slug-HASH@trilla.invalid`.

In: a Label Studio JSON export. Its annotations name their annotator by user id (or, expanded, by
e-mail); `users` (Label Studio's /api/users answer, or the users file trilla wrote) turn ids into
addresses, and addresses back into trilla's names. Tasks are matched to items by trilla's item id, else
by the file they show (the longest unambiguous tail of its path), so a project labelled only in Label
Studio imports too. What cannot be read is left out and listed, never attached to another item; an
annotation that is already the annotator's standing answer adds nothing, so importing twice is a no-op.

Written by hand: the format is plain JSON, and Label Studio's SDK pulls in a large tree of pinned
dependencies that trilla does not need (the tests run the real server from a virtualenv of its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from tqdm.auto import tqdm

from trilla.errors import TrillaError
from trilla.label.project import Project

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
DOMAIN = "trilla.invalid"  # a reserved name (RFC 2606): no mail ever goes there
LOCAL_FILES = "/data/local-files/?d="


def email_of(annotator: str) -> str:
    """The Label Studio user (an e-mail address) that stands for this trilla annotator, always the same."""
    if EMAIL.fullmatch(annotator):
        return annotator
    slug = re.sub(r"[^a-z0-9]+", "-", annotator.lower()).strip("-")[:40] or "annotator"
    if slug != annotator:  # two names that slug alike ("Ann B", "ann-b") stay two users
        slug += "-" + hashlib.sha1(annotator.encode()).hexdigest()[:6]
    return f"{slug}@{DOMAIN}"


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


def media_root(paths: list[str], root: Path | None = None) -> tuple[Path, Path]:
    """(document root, storage folder) for Label Studio's local-files serving: the storage is the folder
    that holds every item, and it must lie below the root (Label Studio refuses a storage that is the root
    itself); the root defaults to the storage's parent."""
    storage = Path(os.path.realpath(os.path.commonpath([str(Path(p).parent) for p in paths])))
    root = storage.parent if root is None else Path(os.path.realpath(root))
    if root == storage or not storage.is_relative_to(root):
        raise TrillaError(f"the items' folder {storage} must lie below Label Studio's document root, and {root} is "
                          f"{'that folder itself' if root == storage else 'not above it'}: give --media-root a folder above {storage}")
    return root, storage


def to_labelstudio(project: Project, root: Path | None = None) -> dict[str, Any]:
    """The tasks (one per item: its media under the document root through Label Studio's local-files
    storage, trilla's item id, and an annotation per annotator with their standing answer), the users to
    create, and where Label Studio's document root and storage go (`media_root`)."""
    items = project.items()
    if not len(items):
        raise TrillaError(f"{project.folder} has no items")
    root, storage = media_root(list(items["path"]), root)
    standing = project.standing()
    times = {(r.item, r.annotator): r.created for r in project.answers().itertuples() if not r.undone}
    by_item = {item: group for item, group in standing.groupby("item")} if len(standing) else {}
    tasks = []
    for row in items.itertuples():
        annotations = []
        for answer in by_item.get(row.item, standing.iloc[:0]).itertuples():
            when = datetime.fromtimestamp(times[row.item, answer.annotator], UTC).isoformat()
            annotations.append({"completed_by": {"email": email_of(answer.annotator)}, "created_at": when, "result": _result(project, answer.value)})
        shown = Path(os.path.realpath(row.path)).relative_to(root).as_posix()
        tasks.append({"data": {row.media: LOCAL_FILES + shown, "trilla_item": int(row.item)}, "annotations": annotations})
    annotators = sorted(set(standing["annotator"])) if len(standing) else []
    users = [{"email": email_of(a), "username": email_of(a).split("@")[0][:150], "trilla_annotator": a} for a in annotators]
    return {"tasks": tasks, "users": users, "document_root": str(root), "storage": str(storage)}



def write_labelstudio(project: Project, target: Path, root: Path | None = None) -> str:
    """The export as Label Studio takes it, beside `target` (tasks; users; one labelling config per kind of
    media, which Label Studio needs), each under a free name; returns the steps that load it there."""
    import shlex

    from trilla.atomic import write_text
    from trilla.paths import free_path

    export = to_labelstudio(project, root)
    write_text(target, json.dumps(export["tasks"], indent=1) + "\n")
    users = free_path(target.with_name(f"{target.stem}.users.json"))
    write_text(users, json.dumps(export["users"], indent=1) + "\n")
    configs = []
    for media in sorted(set(project.items()["media"])):
        configs.append(free_path(target.with_name(f"{target.stem}.{media}.xml")))
        write_text(configs[-1], labeling_config(project, media) + "\n")
    document_root = shlex.quote(export["document_root"])
    return (f"{len(export['tasks'])} Label Studio tasks with {sum(len(t['annotations']) for t in export['tasks'])} annotations by "
            f"{len(export['users'])} annotators. In Label Studio (docs: Label Studio and trilla in the README):\n"
            f"  1. start it with: LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={document_root} "
            "label-studio start\n"
            f"  2. create the users in {users} (POST /api/users/ with each email and username)\n"
            f"  3. create a project with the labelling config in {', '.join(map(str, configs))}\n"
            f"  4. add a Local Files source storage on {export['storage']} (do not sync it: the tasks bring the files)\n"
            f"  5. import {target}")

def _users(files: Sequence[Any]) -> tuple[dict[int, str], dict[str, str]]:
    """(Label Studio user id -> e-mail, e-mail -> trilla annotator) from users files, each as read from
    JSON: Label Studio's /api/users answer (a list, or a page with `results`), or the users trilla's
    export wrote."""
    listed = [user for given in files for user in (given.get("results") or [] if isinstance(given, dict) else given if isinstance(given, list) else [])]
    ids, names = {}, {}
    for user in listed:
        if not isinstance(user, dict) or not isinstance(user.get("email"), str):
            continue
        if isinstance(user.get("id"), int) and not isinstance(user["id"], bool):
            ids[user["id"]] = user["email"]
        if isinstance(user.get("trilla_annotator"), str):
            names[user["email"]] = user["trilla_annotator"]
    return ids, names


class _Items:
    """trilla's items, found by id or by the tail of the file path a task shows."""

    def __init__(self, project: Project):
        items = project.items()
        self.ids = set(int(i) for i in items["item"])
        self.tails: dict[tuple[str, ...], list[int]] = {}
        for item, path in zip(items["item"], items["path"]):
            parts = Path(path).parts
            for length in range(1, len(parts) + 1):
                self.tails.setdefault(parts[-length:], []).append(int(item))

    def by_file(self, shown: str) -> int | str:
        """The item whose path ends like the file a task shows, or why there is none."""
        query = urlsplit(shown).query
        path = parse_qs(query).get("d", [None])[0] if LOCAL_FILES.split("?")[0] in shown else None
        parts = PurePosixPath(unquote(path or urlsplit(shown).path)).parts
        candidates = [parts]
        if parts and re.match(r"[0-9a-f]{8}-", parts[-1]):  # Label Studio names an upload HASH-name
            candidates.append((*parts[:-1], parts[-1][9:]))
        for tail in candidates:
            for length in range(len(tail), 0, -1):  # the longest tail that names one item
                found = self.tails.get(tuple(tail[-length:]), [])
                if len(found) == 1:
                    return found[0]
                if found:
                    return f"its file {shown} could be any of {len(found)} items"
        return f"no item's file is {shown}"


def from_labelstudio(project: Project, path: Path, users: Sequence[Any] = (), progress: bool = True) -> tuple[int, list[str]]:
    """Answers from a Label Studio JSON export; how many were added, and what was left out and why.
    `users` are the users files, each as read from JSON (see `_users`)."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TrillaError(f"{path} is not a readable Label Studio JSON export: {err}") from None
    if not isinstance(tasks, list):
        raise TrillaError(f"{path}: a Label Studio export is a list of tasks, not {type(tasks).__name__}")
    ids, names = _users(users)
    standing = project.standing()
    for annotator in set(standing["annotator"]) if len(standing) else ():
        names.setdefault(email_of(annotator), annotator)
    current = {(r.item, r.annotator): r.value for r in standing.itertuples()}
    items = _Items(project)
    answers, skipped = [], []
    for number, task in enumerate(tqdm(tasks, desc="reading Label Studio tasks", unit="task", disable=None if progress else True)):
        where = f"task {task['id']}" if isinstance(task, dict) and "id" in task else f"task #{number + 1} of the file"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            skipped.append(f"{where}: not a task with a data object")
            continue
        item = _item_of(task["data"], items)
        if isinstance(item, str):
            skipped.append(f"{where}: {item}")
            continue
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            skipped.append(f"{where}: its annotations are not a list")
            continue
        for annotation in annotations:
            annotator = _annotator(annotation, ids, names)
            if annotator is None:
                skipped.append(f"{where}: an annotation without a known annotator")
                continue
            if annotation.get("was_cancelled"):
                continue  # skipped in Label Studio: no answer
            try:
                value = project.check(_value(project, annotation.get("result")))
            except ValueError as err:
                skipped.append(f"{where}, {annotator}: {err}")
                continue
            if current.get((item, annotator)) != value:
                answers.append((item, annotator, value))
                current[item, annotator] = value
    project.answer_many(answers)
    return len(answers), skipped


def _item_of(data: dict, items: _Items) -> int | str:
    """The task's item: by its file, which must agree with trilla's item id where the task has one (an
    export of another project must not land on this one's items of the same number)."""
    given = data.get("trilla_item")
    if given is not None and (isinstance(given, bool) or not isinstance(given, int)):
        return f"its trilla_item {given!r} is not an item id"
    if given is not None and given not in items.ids:
        return f"no item {given} in this project"
    shown = data.get("image") or data.get("audio")
    if not isinstance(shown, str) or not shown:
        return "it shows no image or audio file"
    found = items.by_file(shown)
    if given is not None and found != given:
        return f"its trilla_item {given} is not the item whose file it shows ({shown})"
    return found


def _annotator(annotation: Any, ids: dict[int, str], names: dict[str, str]) -> str | None:
    """trilla's name for whoever made the annotation: the address behind a user id, then the trilla
    annotator behind the address, else the address itself."""
    if not isinstance(annotation, dict):
        return None
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if isinstance(who, int) and not isinstance(who, bool):
        who = ids.get(who, f"labelstudio-user-{who}")
    if not isinstance(who, str) or not who:
        return None
    return names.get(who, who)


def _value(project: Project, result: Any) -> Any:
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise ValueError("its result is not a list of regions")
    if project.kind == "plane":
        numbers = {r.get("from_name"): (r.get("value") or {}).get("number") for r in result if r.get("type") == "number" and isinstance(r.get("value"), dict)}
        if any(not isinstance(numbers.get(axis), (int, float)) for axis in project.axes):
            raise ValueError(f"the annotation needs a number for each of {', '.join(project.axes)}")
        return [numbers[axis] for axis in project.axes]
    choices = [c for r in result if r.get("type") == "choices" and isinstance(r.get("value"), dict)
               for c in (r["value"].get("choices") if isinstance(r["value"].get("choices"), list) else [])]
    if project.kind == "classes":
        if len(choices) != 1:
            raise ValueError(f"the annotation chooses {len(choices)} classes, not one")
        return choices[0]
    return choices
