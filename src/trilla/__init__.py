"""trilla: turn homegrown datasets of images and audio into good classifiers.

Library first: `trilla.train(config) -> Run`, `trilla.load_run(path).predict(files)`; the CLI is thin.
"""

__version__ = "0.1.0"

from trilla.config import Config, load_config  # noqa: E402
from trilla.errors import TrillaError  # noqa: E402
from trilla.runs import Run  # noqa: E402


def train(config: Config, **kwargs) -> Run:
    from trilla.training import train as _train

    return _train(config, **kwargs)


def resume(run: str, **kwargs) -> Run:
    from trilla.training import resume as _resume

    return _resume(run, **kwargs)


def load_run(path: str) -> Run:
    return Run(path)


__all__ = ["Config", "Run", "TrillaError", "load_config", "load_run", "resume", "train"]
