"""How a server serves, in one place: `create_app` takes these, and `trilla serve` and `trilla label
serve` read their options' defaults from here (light: the command line imports it before anything heavy)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Settings:
    """How `create_app` serves: batching, limits, URL predict and trainings over HTTP."""

    max_upload_mb: float = 20.0
    max_batch: int = 32
    max_wait_ms: float = 1.0
    decode_threads: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    torch_threads: int | None = None  # intra-op threads for inference; None: leave torch's own setting
    gil_switch_ms: float = 1.0  # the interpreter's switch interval while serving (Python's own: 5 ms), see the module docstring
    token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None  # without a token, the Host names answered (addresses always are); None: any
    data_root: Path | None = None
    trainings: bool = True
    max_trainings: int = 1  # trainings over HTTP running at once; more are answered 429
    max_epochs: int = 1000  # the most epochs a training over HTTP may run, however asked
    urls: bool = True
    url_allow: tuple[str, ...] = ()
    url_timeout: float = 10.0  # connect and read, each
    url_deadline: float = 30.0  # a whole URL fetch, from the lookup to the last byte
    url_fetches: int = 16  # URL fetches in flight at once (on the event loop); more wait their turn
    quiz_data: Path | None = None  # the quiz's labelled items; default: each run's test split
    quiz_scores: Path | None = None  # the high-score table; default: $TRILLA_CACHE/quiz_scores.db
