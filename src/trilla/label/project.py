"""A labelling project: a folder holding project.json (what is labelled and how) and, unless it lives on
PostgreSQL, labels.db (the items and every answer).

Three kinds: `classes` (one class per item), `multilabel` (any set of labels) and `plane` (a point on
the music study's valence/arousal plane, both axes in [-1, 1]; quadrants happy, stress, sad, calm).
Each annotator sees only their own answers; the next item is the one with the fewest annotators so far
(or, for a project made with a run, the one the model is least sure of). A project `trilla review
--label` made holds the suspected mislabels of a dataset: each item shows its current label, and the
reviewed runs' votes on request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from trilla.atomic import write_text
from trilla.data.affect import QUADRANT_SIGNS
from trilla.errors import TrillaError
from trilla.label.store import DATABASE, Answer, Base, Item, engine_for

KINDS = ("classes", "multilabel", "plane")
PROJECT = "project.json"


@dataclass
class Shown:
    """An item as one annotator sees it: no other annotator's answer, and the model's guess only on request."""

    id: int
    media: str
    position: int  # items this annotator has answered or skipped
    total: int
    answer: Any = None  # this annotator's current answer to it
    given: str | None = None  # the label under review (only in a review project)
    name: str = ""  # the file's name, so the annotator can say which item they mean
    skipped: bool = False  # this annotator's standing answer to it is a skip


class Project:
    def __init__(self, folder: str | Path, db: str | None = None):
        self.folder = Path(folder)
        path = self.folder / PROJECT
        if not path.is_file():
            raise TrillaError(f"{self.folder} is not a labelling project: it has no {PROJECT} (make one with trilla label new)")
        self.spec = _spec(path)
        self.engine = engine_for(db or self.spec.get("db"), self.folder)
        Base.metadata.create_all(self.engine)

    # --- what the project is -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def classes(self) -> list[str]:
        return list(self.spec.get("classes") or [])

    @property
    def axes(self) -> list[str]:
        return list(self.spec.get("axes") or [])

    @property
    def quadrants(self) -> dict[str, tuple[int, int]]:
        """The plane's quadrant names and the signs of (valence, arousal) that make them, as the page
        draws them (empty for other kinds)."""
        return dict(QUADRANT_SIGNS) if self.kind == "plane" else {}

    @property
    def review(self) -> dict | None:
        """For a project `trilla review --label` made: the queue it holds and the manifest columns its
        answers correct."""
        return self.spec.get("review")

    @property
    def guided(self) -> bool:
        """Items come with the model's guess (or the reviewed runs' votes), least sure first."""
        return self.spec.get("run") is not None or self.review is not None

    @classmethod
    def create(cls, folder: str | Path, data: str | Path, kind: str, names: list[str], db: str | None = None,
               run=None, guesses: Callable[[list[Path]], list[tuple[str | None, float | None]]] | None = None,
               extra: dict | None = None) -> Project:
        """A new project over the pictures or sounds of `data` (a folder tree or a CSV manifest with a
        path column); an existing project is never overwritten. Each item's guess and confidence come from
        `guesses(paths)`, or else from `run`; `extra` goes into project.json."""
        from trilla.label.items import find_items

        folder = Path(folder)
        if kind not in KINDS:
            raise TrillaError(f"a project labels {', '.join(KINDS)}, not {kind!r}")
        if (folder / PROJECT).exists():
            raise TrillaError(f"{folder} is already a labelling project; it is kept (choose another folder)")
        if db is None and (folder / DATABASE).exists():
            raise TrillaError(f"{folder} holds a {DATABASE} but no {PROJECT}: answers may be in it, so nothing is written there "
                              f"(choose another folder, or restore {folder / PROJECT})")
        names = [n.strip() for n in names if n.strip()]
        if kind == "plane" and len(names) != 2:
            raise TrillaError(f"the plane has two axes (valence,arousal), not {len(names)}: {names}")
        if kind != "plane" and len(names) < 2:
            raise TrillaError("give at least two classes: --classes a,b")
        if len(set(names)) != len(names):
            raise TrillaError(f"the names repeat: {names}")
        found = find_items(Path(data))
        if not found:
            raise TrillaError(f"no pictures or sounds found in {data}")
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"name": folder.resolve().name, "kind": kind, ("axes" if kind == "plane" else "classes"): names,
                "data": str(Path(data).resolve()), "db": db, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "run": None if run is None else str(run.path), **(extra or {})}
        if guesses is None and run is not None:
            guesses = partial(_guesses, run)
        guessed = guesses([path for path, _, _ in found]) if guesses is not None else [(None, None)] * len(found)
        write_text(folder / PROJECT, json.dumps(spec, indent=2) + "\n")
        project = cls(folder, db)
        with Session(project.engine) as session, session.begin():
            if session.scalar(select(func.count()).select_from(Item)):
                raise TrillaError(f"the database of {folder} already holds items; it is kept")
            session.add_all(Item(path=str(path), media=media, given=given, guess=guess, confidence=confidence)
                            for (path, media, given), (guess, confidence) in zip(found, guessed))
        return project

    # --- one annotator's view ----------------------------------------------------------------------

    def _current(self, session: Session, annotator: str | None = None):
        """The standing answers: per item and annotator, the latest one not undone (skips included)."""
        query = select(Answer.item_id, Answer.annotator, func.max(Answer.id).label("id")).where(~Answer.undone)
        if annotator is not None:
            query = query.where(Answer.annotator == annotator)
        latest = query.group_by(Answer.item_id, Answer.annotator).subquery()
        return session.execute(select(Answer).join(latest, Answer.id == latest.c.id)).scalars().all()

    def item(self, item_id: int) -> Item:
        with Session(self.engine) as session:
            found = session.get(Item, item_id)
            if found is None:
                raise KeyError(item_id)
            session.expunge(found)
            return found

    def show(self, item_id: int, annotator: str) -> Shown:
        item = self.item(item_id)
        with Session(self.engine) as session:
            mine = {a.item_id: a for a in self._current(session, annotator)}
            total = session.scalar(select(func.count()).select_from(Item)) or 0
        answer = mine.get(item_id)
        return Shown(item.id, item.media, len(mine), total, None if answer is None or answer.value is None else json.loads(answer.value),
                     item.given if self.review is not None else None, Path(item.path).name, answer is not None and answer.value is None)

    def skipped(self, annotator: str) -> list[int]:
        """The items whose standing answer by this annotator is a skip, the one skipped longest ago first."""
        with Session(self.engine) as session:
            return [a.item_id for a in sorted(self._current(session, annotator), key=lambda a: a.id) if a.value is None]

    def next_item(self, annotator: str, revisit: bool = False) -> Shown | None:
        """The item this annotator has not seen with the fewest annotators so far (with a run or a review:
        the one the models are least sure of); None when they have seen every item. With `revisit`, once
        every item is seen, the one they skipped longest ago: skipped items come back when asked for."""
        with Session(self.engine) as session:
            standing = self._current(session)
            seen = {a.item_id for a in standing if a.annotator == annotator}
            counts: dict[int, int] = {}
            for a in standing:
                if a.value is not None:
                    counts[a.item_id] = counts.get(a.item_id, 0) + 1
            items = session.execute(select(Item.id, Item.confidence)).all()
        left = [((c if c is not None else 2.0) if self.guided else 0.0, counts.get(i, 0), i) for i, c in items if i not in seen]
        if left:
            return self.show(min(left)[2], annotator)
        again = self.skipped(annotator) if revisit else []
        return self.show(again[0], annotator) if again else None

    def answer(self, item_id: int, annotator: str, value: Any, seconds: float = 0.0) -> None:
        """Store one answer (None: skipped) in its own transaction."""
        stored = None if value is None else json.dumps(self.check(value))
        self.item(item_id)
        with Session(self.engine) as session, session.begin():
            session.add(Answer(item_id=item_id, annotator=annotator, value=stored, created=time.time(),
                               seconds=max(0.0, min(float(seconds), 86400.0))))

    def answer_many(self, answers: list[tuple[int, str, Any]]) -> None:
        """Store answers (item, annotator, value) in one transaction: an import of ten thousand takes a
        second, not the minute one transaction each would."""
        stored = [(item, annotator, json.dumps(self.check(value))) for item, annotator, value in answers]
        now = time.time()
        with Session(self.engine) as session, session.begin():
            session.add_all(Answer(item_id=item, annotator=annotator, value=value, created=now, seconds=0.0) for item, annotator, value in stored)

    def check(self, value: Any) -> Any:
        """The value as stored, or ValueError saying what this project takes."""
        if self.kind == "classes":
            if value not in self.classes:
                raise ValueError(f"the answer must be one of {', '.join(self.classes)}")
            return value
        if self.kind == "multilabel":
            if not isinstance(value, list) or any(v not in self.classes for v in value) or len(set(value)) != len(value):
                raise ValueError(f"the answer is a list of distinct labels among {', '.join(self.classes)}")
            return sorted(value, key=self.classes.index)
        if (not isinstance(value, list) or len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
                or any(not -1 <= v <= 1 for v in value)):
            raise ValueError(f"the answer is a point [{self.axes[0]}, {self.axes[1]}], each in [-1, 1]")
        return [round(float(v), 4) for v in value]

    def undo(self, annotator: str) -> int | None:
        """Take back this annotator's latest answer (their earlier answer to that item, if any, stands
        again); the item's id, or None when there is nothing to undo."""
        with Session(self.engine) as session, session.begin():
            last = session.scalar(select(Answer).where(Answer.annotator == annotator, ~Answer.undone).order_by(Answer.id.desc()).limit(1))
            if last is None:
                return None
            session.execute(update(Answer).where(Answer.id == last.id).values(undone=True))
            return last.item_id

    def previous(self, annotator: str, before: int | None = None) -> int | None:
        """The item this annotator answered before `before` (their latest, without it)."""
        with Session(self.engine) as session:
            order = [a.item_id for a in sorted(self._current(session, annotator), key=lambda a: a.id)]
        if before in order:
            order = order[: order.index(before)]
        return order[-1] if order else None

    # --- the whole project -------------------------------------------------------------------------

    def answers(self) -> pd.DataFrame:
        """Every answer ever given, undone ones too: item, path, annotator, value (the answer itself, None for
        a skip), skipped, created, seconds, undone. A skip is its own column because how a DataFrame spells
        a missing value changes between pandas versions (None in pandas 2, NaN in pandas 3)."""
        with Session(self.engine) as session:
            rows = session.execute(select(Answer, Item.path).join(Item, Item.id == Answer.item_id).order_by(Answer.id)).all()
        columns = ["item", "path", "annotator", "value", "skipped", "created", "seconds", "undone"]
        frame = pd.DataFrame([{"item": a.item_id, "path": path, "annotator": a.annotator, "skipped": a.value is None, "created": a.created,
                               "seconds": a.seconds, "undone": a.undone} for a, path in rows], columns=columns)
        frame["value"] = pd.Series([None if a.value is None else json.loads(a.value) for a, _ in rows], index=frame.index, dtype=object)
        return frame

    def standing(self) -> pd.DataFrame:
        """Per item and annotator, the answer that stands (skips and undone answers left out)."""
        with Session(self.engine) as session:
            rows = [(a.item_id, a.annotator, json.loads(a.value)) for a in self._current(session) if a.value is not None]
        return pd.DataFrame(rows, columns=["item", "annotator", "value"])

    def items(self) -> pd.DataFrame:
        with Session(self.engine) as session:
            rows = session.execute(select(Item)).scalars().all()
        return pd.DataFrame([{"item": i.id, "path": i.path, "media": i.media, "given": i.given, "guess": i.guess,
                              "confidence": i.confidence} for i in rows])


def _spec(path: Path) -> dict:
    """project.json, checked: a person may have edited it, or a copy may have been cut short."""
    fix = f"restore {path} from a backup, or make the project anew with trilla label new in another folder"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise TrillaError(f"{path} is not readable JSON ({err}): {fix}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise TrillaError(f"{path} does not describe a labelling project (it needs a name and a kind): {fix}")
    if spec.get("kind") not in KINDS:
        raise TrillaError(f"{path} names the kind {spec.get('kind')!r}; a project labels {', '.join(KINDS)}: {fix}")
    names = spec.get("axes" if spec["kind"] == "plane" else "classes")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) < 2:
        raise TrillaError(f"{path} gives no {'axes' if spec['kind'] == 'plane' else 'classes'} for its kind {spec['kind']}: {fix}")
    return spec


def _guesses(run, paths: list[Path]) -> list[tuple[str | None, float | None]]:
    """The run's answer for each file (its top labels, JSON) and its confidence (the top probability)."""
    out: list[tuple[str | None, float | None]] = []
    for record in run.predict(paths, top_k=3):
        if "predictions" not in record or not record["predictions"]:
            out.append((None, None))
            continue
        out.append((json.dumps(record["predictions"]), float(record["predictions"][0]["probability"])))
    return out
