"""The guitar/bass study's mini-game for any served run: a person and the model answer the same items,
and their scores are compared.

Rounds are drawn from a labelled set (the run's test split, or `--quiz-data`); a round's picture or
sound is served by quiz and round number, never by path, and its truth (and the model's answer) leave
the server only with the answer to that round. Finished games go into a high-score table (SQLite,
SQLAlchemy) per model.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import Float, Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from trilla.label.items import find_items, media_of
from trilla.runs import Run
from trilla.serve.failure import failures

MAX_GAMES = 1000  # games kept in memory; the oldest go first


class _Base(DeclarativeBase):
    """The high-score table's metadata: its own SQLite file, apart from any labelling project."""


class Score(_Base):
    __tablename__ = "scores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    player: Mapped[str] = mapped_column(String(200))
    score: Mapped[int] = mapped_column(Integer)
    model_score: Mapped[int] = mapped_column(Integer)
    rounds: Mapped[int] = mapped_column(Integer)
    created: Mapped[float] = mapped_column(Float)


def quiz_items(run: Run, data: Path | None = None) -> list[tuple[str, str, str]]:
    """(path, truth, image or audio) for each labelled item the quiz may show."""
    if data is not None:
        return [(str(path), given, media) for path, media, given in find_items(Path(data)) if given]
    splits = run.table("splits.csv")
    if not len(splits):
        return []
    test = splits[splits["split"] == "test"]
    return [(path, str(label), media) for path, label in zip(test["path"], test["label"])
            if (media := media_of(Path(path))) is not None and Path(path).is_file()]


@dataclass
class Game:
    model: str
    player: str
    rounds: list[tuple[str, str, str]]
    answers: list[dict] = field(default_factory=list)
    saved: bool = False


class Start(BaseModel):
    model: str
    player: str = Field(min_length=1, max_length=200)
    rounds: int = Field(10, ge=1, le=50)


class RoundView(BaseModel):
    index: int
    media: str
    url: str


class Started(BaseModel):
    quiz: str
    rounds: int
    classes: list[str]
    round: RoundView


class Answered(BaseModel):
    quiz: str
    round: int
    answer: str = Field(min_length=1, max_length=500)


class Outcome(BaseModel):
    truth: str
    model: str
    confidence: float
    player_right: bool
    model_right: bool
    player_score: int
    model_score: int
    next: RoundView | None
    summary: dict | None = Field(None, description="at the end: the items the player got wrong and the model right, and the other way round")


class ScoreRow(BaseModel):
    player: str
    score: int
    model_score: int
    rounds: int
    created: float


def quiz_router(served: dict, quiz_data: Path | None, scores_db: Path, guard, render) -> APIRouter:
    """The quiz's page and JSON; `served` maps names to ServedModels (read when a game starts, so a
    model a training adds can be played too)."""
    router = APIRouter(prefix="/quiz", tags=["quiz"], responses=failures(401, 403, 404, 409, 422))
    scores_db.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{scores_db}")
    _Base.metadata.create_all(engine)
    games: dict[str, Game] = {}
    pools: dict[str, list] = {}

    def view(key: str, game: Game, index: int) -> RoundView:
        return RoundView(index=index, media=game.rounds[index][2], url=f"/quiz/media/{key}/{index}")

    def game_of(key: str) -> Game:
        if key not in games:
            raise HTTPException(404, f"no quiz {key!r} (games are kept while the server runs)")
        return games[key]

    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, model: str | None = None):
        return render("quiz.html", request, models=list(served), chosen=model)

    @router.post("/api/start", response_model=Started, dependencies=[Depends(guard)])
    def start(posted: Start) -> Started:
        if posted.model not in served:
            raise HTTPException(404, f"no model {posted.model!r}")
        if posted.model not in pools:
            pools[posted.model] = quiz_items(served[posted.model].run, quiz_data)
        pool = [item for item in pools[posted.model] if item[1] in served[posted.model].predictor.classes]
        if not pool:
            raise HTTPException(422, f"model {posted.model!r} has no labelled items to quiz on (give trilla serve --quiz-data)")
        picks = np.random.default_rng().choice(len(pool), size=min(posted.rounds, len(pool)), replace=False)
        key = secrets.token_urlsafe(12)
        games[key] = game = Game(posted.model, posted.player.strip(), [pool[i] for i in picks])
        while len(games) > MAX_GAMES:
            games.pop(next(iter(games)))
        return Started(quiz=key, rounds=len(game.rounds), classes=served[posted.model].predictor.classes, round=view(key, game, 0))

    @router.post("/api/answer", response_model=Outcome, dependencies=[Depends(guard)])
    async def answer(posted: Answered) -> Outcome:
        game = game_of(posted.quiz)
        if posted.round != len(game.answers) or posted.round >= len(game.rounds):
            raise HTTPException(409, f"this quiz is at round {len(game.answers)}, not {posted.round}")
        model = served[game.model]
        if posted.answer not in model.predictor.classes:
            raise HTTPException(422, f"answer one of {', '.join(model.predictor.classes)}")
        path, truth, _ = game.rounds[posted.round]
        record = await model.predict(Path(path).read_bytes(), top_k=1)
        guess: dict[str, Any] = record["predictions"][0] if record.get("predictions") else {"label": "", "probability": 0.0}
        game.answers.append({"path": path, "truth": truth, "player": posted.answer, "model": guess["label"], "confidence": guess["probability"]})
        player_score = sum(a["player"] == a["truth"] for a in game.answers)
        model_score = sum(a["model"] == a["truth"] for a in game.answers)
        last = len(game.answers) == len(game.rounds)
        summary = None
        if last:
            shown = [{"round": i, "truth": a["truth"], "player": a["player"], "model": a["model"]} for i, a in enumerate(game.answers)]
            summary = {"player_wrong_model_right": [s for s in shown if s["player"] != s["truth"] and s["model"] == s["truth"]],
                       "model_wrong_player_right": [s for s in shown if s["model"] != s["truth"] and s["player"] == s["truth"]]}
            if not game.saved:
                with Session(engine) as session, session.begin():
                    session.add(Score(model=game.model, player=game.player, score=player_score, model_score=model_score,
                                      rounds=len(game.rounds), created=time.time()))
                game.saved = True
        return Outcome(truth=truth, model=guess["label"], confidence=guess["probability"], player_right=posted.answer == truth,
                       model_right=guess["label"] == truth, player_score=player_score, model_score=model_score,
                       next=None if last else view(posted.quiz, game, posted.round + 1), summary=summary)

    @router.get("/api/scores", response_model=list[ScoreRow])
    def scores(model: str = Query(...), top: int = Query(10, ge=1, le=100)) -> list[ScoreRow]:
        with Session(engine) as session:
            rows = session.scalars(select(Score).where(Score.model == model)
                                   .order_by((Score.score * 1.0 / Score.rounds).desc(), Score.created).limit(top)).all()
        return [ScoreRow(player=r.player, score=r.score, model_score=r.model_score, rounds=r.rounds, created=r.created) for r in rows]

    @router.get("/media/{key}/{index}", include_in_schema=False)
    def media(key: str, index: int):
        game = game_of(key)
        if not 0 <= index <= len(game.answers) or index >= len(game.rounds):
            raise HTTPException(404, "that round is not open")
        path = game.rounds[index][0]
        return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream")

    return router
