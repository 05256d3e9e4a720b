"""The one exception type a user can cause; the CLI prints its message without a traceback."""


class TrillaError(Exception):
    """A problem with the user's input (config, data, run directory) that names the thing and the fix."""


def unknown_name(what: str, name: str, known: list[str]) -> TrillaError:
    """The error for a name no registry holds: the closest registered name, and all of them."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return TrillaError(f"unknown {what} {name!r}{hint} Available: {', '.join(known)}")
