"""Where a labelling project keeps its items and answers: SQLite in the project folder (WAL, every answer
its own committed transaction, synchronous=FULL, so a killed server loses at most the answer being
sent), or the same schema on PostgreSQL for a team (`--db postgresql://...`). SQLAlchemy, so one schema
serves both.

Answers are only ever appended: undo marks an answer undone, a new answer to an item supersedes the
annotator's earlier one, and the history stays for the export.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from trilla.errors import TrillaError


class Base(DeclarativeBase):
    """The labelling tables' metadata (items, answers), created on first open."""


class Item(Base):
    """One picture or sound to label: its file (never a path a request brings), the label the data
    gave it, and the model's guess when the project was made with a run."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    media: Mapped[str] = mapped_column(String(16))  # image or audio
    given: Mapped[str | None] = mapped_column(Text, nullable=True)  # the label the data came with
    guess: Mapped[str | None] = mapped_column(Text, nullable=True)  # the model's answer (JSON), with --run
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)


class Answer(Base):
    __tablename__ = "answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200), index=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: a class, a list of labels, or [x, y]; null: skipped
    created: Mapped[float] = mapped_column(Float)  # seconds since the epoch
    seconds: Mapped[float] = mapped_column(Float)  # how long the item was looked at
    undone: Mapped[bool] = mapped_column(Boolean, default=False)


DATABASE = "labels.db"


class StorageError(TrillaError):
    """The labelling database cannot be read or written: it is not a database, it is damaged, or
    another program holds it locked. Says which file and what to do."""


def storage_error(where: str, err: BaseException) -> StorageError:
    """What a database error means to the person who owns `where` (a file or a database URL)."""
    text = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    if "locked" in text or "busy" in text:
        fix = "another program holds it locked (a second trilla, a database browser): close that program and try again"
    elif "not a database" in text or "malformed" in text or "disk image" in text:
        fix = ("it is not a SQLite database or is damaged: restore it from a backup, or move it away and make the project anew "
               "with trilla label new")
    else:
        fix = "check that it is reachable and writable"
    return StorageError(f"the labelling database {where} cannot be used ({text}): {fix}")


def engine_for(url: str | None, folder: Path) -> Engine:
    """The project's database: `url` (postgresql://...), or labels.db in its folder. Every database error
    an operation meets is raised as a StorageError naming the database."""
    file = str(Path(folder).resolve() / DATABASE)
    try:
        engine = create_engine(url or f"sqlite:///{file}", pool_pre_ping=True)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors for a bad URL or a missing driver vary
        raise TrillaError(f"cannot open the labelling database {url!r}: {err}") from None
    where = file if url is None else engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def explain(context) -> StorageError:
        return storage_error(where, context.original_exception)

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def durable(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine
