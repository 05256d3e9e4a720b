"""The one family of exceptions a user can cause, so a caller catches one name: `TrillaError`, whose
message names the thing and the fix (the CLI prints it without a traceback, exit 2). Two kinds below it
are handled on their own: an item that cannot be read (`Unreadable`, also a ValueError: a batch skips and
lists it, a server answers 400 for it) and a request trilla will not carry out (`Refused`: 422 from a
server)."""


class TrillaError(Exception):
    """A problem with the user's input (config, data, run directory) that names the thing and the fix."""


class Unreadable(TrillaError, ValueError):
    """One item (a picture, a sound, a row of embeddings) cannot be read; the message is the reason given
    for that item alone. The decoders' own kinds (ImageError, AudioError, DecodeError) are this."""


class Refused(TrillaError):
    """A request the server will not carry out (a training that would read outside its data root, one too
    many at once)."""


class Diverged(TrillaError):
    """A training whose loss stopped being a number: resuming it repeats the divergence."""


def unknown_name(what: str, name: str, known: list[str]) -> TrillaError:
    """The error for a name no registry holds: the closest registered name, and all of them."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return TrillaError(f"unknown {what} {name!r}{hint} Available: {', '.join(known)}")


NO_SPACE = {28, 122}  # ENOSPC, EDQUOT (a quota is as full as a disk)
NOT_WRITABLE = {30, 13, 1}  # EROFS, EACCES, EPERM


def write_failed(path, err: OSError) -> TrillaError | None:
    """The error for a write the disk refused (full, read-only, not ours), naming the folder and what to
    do; None for other OS errors."""
    from pathlib import Path

    if err.errno in NO_SPACE:
        return disk_full(path, err)
    if err.errno in NOT_WRITABLE:
        where = Path(err.filename or path)
        folder = where if where.is_dir() else where.parent
        said = f"cannot write in {folder}" if err.errno == 30 else f"{where}"
        return TrillaError(f"{said}: {err.strerror.lower()}; choose a folder this user can write to (run.dir, --out, data.store, "
                           "TRILLA_CACHE)")
    return None


def disk_full(path, err: OSError) -> TrillaError:
    """The error for a write that found its disk full: which folder, and what to do about it."""
    import shutil
    from pathlib import Path

    folder = Path(path).parent if not Path(path).is_dir() else Path(path)
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return TrillaError(
        f"no space left on the disk of {folder} ({free}) while writing {Path(path).name} ({err.strerror}); free some space "
        "(trilla cache prune), or write elsewhere (run.dir, data.store, TRILLA_CACHE)"
    )
