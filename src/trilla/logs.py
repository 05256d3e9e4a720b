"""Where trilla's console messages go: the standard error of the moment."""

from __future__ import annotations

import logging
import sys


class StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a message comes (as logging's own last-resort
    handler does), not the stream it was made with: a command run twice in one process (a test's capture,
    a notebook cell, click's test runner) would otherwise write to a stream since closed."""

    def __init__(self):
        logging.Handler.__init__(self)  # not StreamHandler's: it would pin the stream of this moment

    @property
    def stream(self):
        return sys.stderr
