"""The one exception type a user can cause; the CLI prints its message without a traceback."""


class TrillaError(Exception):
    """A problem with the user's input (config, data, run directory) that names the thing and the fix."""
