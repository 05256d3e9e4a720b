"""Where labelled data comes from: the one registry of sources, each recognised by its path.

Two sorts register here. A listing source (a folder tree, a CSV manifest) turns `data.path` into
(file, label) samples plus the problems it met on the way (a missing file, an empty class folder); it
never opens a file, which is the store's job. A packed source (AudioSet's HDF5 file, a folder of
TFRecord shards) holds the inputs and labels themselves, of one input kind, and loads them as labelled
data. Packed sources are asked first: they are recognised by their suffixes, where any folder is a tree.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trilla.errors import TrillaError
from trilla.spreadsheet import restore

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Sample:
    """A labelled file; `columns` holds the manifest's other columns that were asked for (metadata)."""

    path: Path
    label: str
    columns: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Problem:
    """A file or folder left out of the dataset, with the reason, for the console and the report."""

    path: str
    reason: str


@dataclass
class Listing:
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


log = logging.getLogger("trilla")
SONG = "song"  # the column naming each clip's recording (harvest clips writes it): a split keeps a song's clips together
Reader = Callable[..., Listing]
EMPTY = "an empty folder: nothing to read"


@dataclass(frozen=True)
class Source:
    """A registered source: `read` lists files with labels, or (a packed source) `load` gives the
    labelled data of input kind `kind` itself (`load(path, config, **options)`, as `InputKind.load`)."""

    name: str
    accepts: Callable[[Path], bool]
    read: Reader | None = None
    load: Callable[..., object] | None = None
    kind: str | None = None


_SOURCES: dict[str, Source] = {}


def register_source(name: str, accepts: Callable[[Path], bool]) -> Callable[[Reader], Reader]:
    """Register a listing source: `reader(path, *, path_column, label_column, extra_columns, label_level,
    allow_outside) -> Listing`."""
    def decorator(reader: Reader) -> Reader:
        _SOURCES[name] = Source(name, accepts, read=reader)
        return reader

    return decorator


def register_packed_source(name: str, accepts: Callable[[Path], bool], kind: str) -> Callable:
    """Register a packed source of input kind `kind`: `loader(path, config, **options) -> LabelledData`."""
    def decorator(loader: Callable) -> Callable:
        _SOURCES[name] = Source(name, accepts, load=loader, kind=kind)
        return loader

    return decorator


def find_source(path: Path) -> Source | None:
    """The source that reads `path`: a packed one first, else a listing one; None when none does."""
    path = Path(path)
    ordered = sorted(_SOURCES.values(), key=lambda source: source.load is None)
    return next((source for source in ordered if source.accepts(path)), None)


def packed_sources(kind: str) -> list[str]:
    """The names of the packed sources holding input kind `kind`."""
    return [source.name for source in _SOURCES.values() if source.kind == kind]


def read_source(
    path: Path, *, path_column: str = "path", label_column: str | None = "label", extra_columns: list[str] = (),
    label_level: int | None = None, allow_outside: bool = False,
) -> Listing:
    """List the samples at `path` with the listing source that reads it. A manifest's paths must stay
    inside its folder unless `allow_outside`."""
    path = Path(path)
    if not path.exists():
        raise TrillaError(f"data path {path} does not exist")
    source = find_source(path)
    if source is None:
        raise TrillaError(f"data path {path} is neither a folder nor a .csv manifest")
    if source.read is None:
        raise TrillaError(f"{path} is packed {source.kind} data ({source.name}), not a list of files: read it with input: {{type: {source.kind}}}")
    listing = source.read(
        path, path_column=path_column, label_column=label_column, extra_columns=list(extra_columns), label_level=label_level,
        allow_outside=allow_outside,
    )
    if not listing.samples:
        found = "".join(f"\n  {p.path}: {p.reason}" for p in listing.problems[:5])
        raise TrillaError(f"no labelled files found in {path}; expected a <class>/<file> folder tree or a CSV" + (f". Left out:{found}" if found else ""))
    return listing


def visible_files(folder: Path) -> list[Path]:
    """Files below `folder`, sorted; hidden files and folders (.DS_Store, .git, caches) are not data."""
    return walk(folder)[0]


def walk(folder: Path) -> tuple[list[Path], list[Problem]]:
    """Files below `folder`, sorted, and what could not be taken, each with its reason: a symlink that
    leads back into a folder above it (a loop; not followed), a broken symlink, something that is not a
    regular file, a folder that cannot be listed. Symlinked folders elsewhere are followed, as users
    link class folders in. Hidden files and folders (.DS_Store, .git, caches) are not data.

    Written over os.scandir because pathlib's rglob neither reports what it leaves out nor detects a
    loop it would follow."""
    files: list[Path] = []
    problems: list[Problem] = []

    def visit(directory: Path, above: frozenset[tuple[int, int]]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            problems.append(Problem(str(directory), f"cannot list this folder: {err.strerror}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir():
                    info = entry.stat()
                    if (info.st_dev, info.st_ino) in above:
                        link = f"{path.name} -> {os.readlink(path)}" if entry.is_symlink() else f"{path.name}, reached through a symlink,"
                        problems.append(Problem(str(path), f"symlink loop ({link} leads back into a folder above it); not followed"))
                        continue
                    before = len(files) + len(problems)
                    visit(path, above | {(info.st_dev, info.st_ino)})
                    if len(files) + len(problems) == before:
                        problems.append(Problem(str(path), EMPTY))
                elif entry.is_file():
                    files.append(path)
                elif entry.is_symlink():
                    problems.append(Problem(str(path), f"broken symlink (-> {os.readlink(path)}); nothing to read"))
                else:
                    problems.append(Problem(str(path), "not a regular file (a pipe, socket or device)"))
            except OSError as err:  # a link to itself: too many levels of symbolic links
                problems.append(Problem(str(path), f"cannot follow: {err.strerror}"))

    real = Path(os.path.realpath(folder))
    visit(Path(folder), frozenset((s.st_dev, s.st_ino) for s in map(os.stat, (real, *real.parents))))  # a link upwards loops too
    return sorted(files), problems


MEDIA: set[str] = set()  # the suffixes of the files input kinds read, added as each kind registers (trilla.kinds)


@register_source("folder", accepts=lambda p: p.is_dir())
def read_folder(root: Path, *, extra_columns: list[str] = (), label_level: int | None = None, **_: str) -> Listing:
    """A <class>/<file> tree, as torchvision's ImageFolder reads it: the top-level folder is the label.

    With `label_level` the label is that part of each file's path below `root` instead (-2 is the
    file's folder: Species in Region/Species/photo.jpg). Metadata comes from path levels, not columns.
    Everything found that cannot be used (a loop, a broken link, a picture or sound outside any class
    folder) is listed with its reason; other files beside the class folders are passed over in silence.
    """
    if extra_columns:
        raise TrillaError(
            f"columns {extra_columns} (metadata, data.split.group_column) need a CSV manifest; {root} is a folder "
            "(metadata can come from a path level: from: path, level: N)"
        )
    found, problems = walk(root)
    listing = Listing(problems=problems)
    if label_level is not None:
        for path in found:
            parts = path.relative_to(root).parts
            folders = range(-len(parts), -1) if label_level < 0 else range(len(parts) - 1)
            if label_level not in folders:
                listing.problems.append(Problem(str(path), f"its path has no folder at data.label_level {label_level}"))
                continue
            listing.samples.append(Sample(path, parts[label_level]))
        return listing
    for i, problem in enumerate(problems):
        if problem.reason == EMPTY and Path(problem.path).parent == root:
            problems[i] = Problem(problem.path, f"class folder '{Path(problem.path).name}' is empty; class left out")
    for path in found:
        parts = path.relative_to(root).parts
        if len(parts) > 1:
            listing.samples.append(Sample(path, parts[0]))
        elif path.suffix.lower() in MEDIA or not MEDIA:  # a picture or sound that no class folder holds
            listing.problems.append(Problem(str(path), "not inside a class folder"))
        # other files beside the class folders (a README, a manifest, a harvest's provenance.csv) are no data: left alone
    return listing


@register_source("csv", accepts=lambda p: p.is_file() and p.suffix.lower() == ".csv")
def read_csv(
    manifest: Path, *, path_column: str = "path", label_column: str | None = "label", extra_columns: list[str] = (),
    allow_outside: bool = False, **_: object
) -> Listing:
    """Rows of path,label[,more], separated by commas, semicolons (as spreadsheets write them in much of
    Europe), tabs or bars; relative paths are resolved against the CSV's folder.

    A path that leads out of the CSV's folder (`../../etc/passwd`, an absolute path elsewhere) is left
    out and listed unless `allow_outside`: a manifest someone else wrote, or one posted to a server,
    must not make trilla read any file the process can. A cell trilla wrote with a leading quote, so that a
    spreadsheet cannot run it (trilla.spreadsheet), is read as it was before. `label_column=None` reads unlabelled rows (the
    label then comes from other columns, e.g. affect coordinates, which the caller checks)."""
    listing = Listing()
    home = Path(os.path.realpath(manifest.parent))
    with manifest_rows(manifest) as rows:
        wanted = [path_column, *([label_column] if label_column else []), *extra_columns]
        missing = [c for c in wanted if c not in (rows.fieldnames or [])]
        if missing:
            raise TrillaError(
                f"{manifest} has no column {' or '.join(map(repr, missing))}; its columns are "
                f"{rows.fieldnames}. Name them with data.path_column / data.label_column / data.metadata.<name>.column / data.targets."
            )
        for line, row in enumerate(rows, start=2):
            row = {key: restore(value) if isinstance(value, str) else value for key, value in row.items()}
            raw_path = (row[path_column] or "").strip()
            label = (row[label_column] or "").strip() if label_column else ""
            if not raw_path or (label_column and not label):
                listing.problems.append(Problem(f"{manifest}:{line}", "empty path or label"))
                continue
            odd = "a NUL character" if "\0" in raw_path else f"{len(raw_path)} characters, more than a path can have" if len(raw_path) > MAX_PATH else ""
            if odd:
                listing.problems.append(Problem(f"{manifest}:{line}", f"the path holds {odd}"))
                continue
            path = Path(raw_path) if Path(raw_path).is_absolute() else manifest.parent / raw_path
            if not allow_outside and not Path(os.path.realpath(path)).is_relative_to(home):
                listing.problems.append(Problem(str(path), f"listed at {manifest.name}:{line} but outside the CSV's folder; "
                                                           "set data.allow_outside: true to read it"))
                continue
            if not path.is_file():
                listing.problems.append(Problem(str(path), f"listed at {manifest.name}:{line} but not found"))
                continue
            listing.samples.append(Sample(path, label, {c: row[c] or "" for c in extra_columns}))
    return listing


MAX_PATH = 4096  # Linux's PATH_MAX; longer is no path on any system
ENCODINGS = ("utf-8-sig", "cp1252")  # what manifests come in: UTF-8 (with Excel's BOM or not), or a Western spreadsheet's own
csv.field_size_limit(64 * 2**20)  # a long cell is a row to read (and refuse by its content), not a crash at 128 kB


def manifest_text(manifest: Path) -> str:
    """A CSV's text: UTF-8, else Windows-1252 (what Excel saves as "CSV" in Western Europe, a superset
    of Latin-1's letters), said in the log; anything else is an error naming the line and the byte."""
    data = manifest.read_bytes()
    try:
        return data.decode(ENCODINGS[0])
    except UnicodeDecodeError as err:
        first = err
    try:
        text = data.decode(ENCODINGS[1])
    except UnicodeDecodeError:
        line = data[: first.start].count(b"\n") + 1
        raise TrillaError(f"{manifest}, line {line}: byte {data[first.start]:#04x} is neither UTF-8 nor Windows-1252 text; "
                          "save the CSV as UTF-8") from None
    line = data[: first.start].count(b"\n") + 1
    log.warning("%s is not UTF-8 (line %d); read as Windows-1252 (Latin-1)", manifest, line)
    return text


def _dialect(text: str) -> type[csv.Dialect] | str:
    """The manifest's delimiter, sniffed from its first lines; a comma when they do not tell."""
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        return "excel"


@contextmanager
def manifest_rows(manifest: Path) -> Iterator[csv.DictReader]:
    """A user's CSV as rows of dicts, however it was saved: its encoding (`manifest_text`) and delimiter
    (`_dialect`) found, the cells trilla quoted for spreadsheets (trilla.spreadsheet) restored."""
    text = manifest_text(manifest)
    with io.StringIO(text, newline="") as handle:
        rows = csv.DictReader(handle, dialect=_dialect(text))
        rows.fieldnames = [restore(name) for name in rows.fieldnames or []]
        yield rows


def header(manifest: Path) -> list[str]:
    """A CSV manifest's column names (none for anything else)."""
    if not (manifest.is_file() and manifest.suffix.lower() == ".csv"):
        return []
    with manifest_rows(manifest) as rows:
        return list(rows.fieldnames or [])


def manifest_table(manifest: Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV as a table of strings (empty for missing), read as `manifest_rows` reads it, and its
    delimiter, to write it back the way it came."""
    import pandas as pd

    text = manifest_text(manifest)
    dialect = _dialect(text)
    delimiter = dialect if isinstance(dialect, str) and len(dialect) == 1 else getattr(dialect, "delimiter", ",")
    table = pd.read_csv(io.StringIO(text), sep=delimiter, keep_default_na=False, dtype=str)
    return table.rename(columns=restore).map(restore), delimiter


def folder_manifest(root: Path, out: Path, label_level: int | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """A CSV manifest of a <class>/<file> tree (or of any tree with `label_level`): path (relative to
    the manifest's folder), label, and the folders on the way as level_1, level_2... (metadata a run
    can read as `data.metadata.<name>.column`). What relabel and hand edits need: a folder tree has no
    place to write a corrected label. Nothing of the tree is read but its names."""
    import pandas as pd

    listing = read_folder(Path(root), label_level=label_level)
    home = Path(os.path.realpath(Path(out).parent))
    rows = []
    for sample in listing.samples:
        folders = sample.path.relative_to(root).parts[:-1]
        rows.append({"path": os.path.relpath(os.path.realpath(sample.path), home), "label": sample.label,
                     **{f"level_{i}": name for i, name in enumerate(folders, start=1)}})
    return pd.DataFrame(rows).fillna(""), listing.problems


def write_folder_manifest(folder: Path, out: Path | None = None, label_level: int | None = None) -> tuple[pd.DataFrame, Path]:
    """`folder_manifest` written to `out` (default FOLDER.csv beside the folder), never over a file that
    is there; what was left out is logged."""
    from trilla.atomic import write_csv

    folder = Path(folder)
    if not folder.is_dir():
        raise TrillaError(f"{folder} is not a folder")
    target = Path(out) if out else folder.parent / f"{folder.resolve().name}.csv"
    if target.exists():
        raise TrillaError(f"{target} exists and is kept; give another --out")
    table, problems = folder_manifest(folder, target, label_level)
    if not len(table):
        raise TrillaError(f"no labelled files found in {folder}")
    for problem in problems:
        log.warning("left out %s: %s", problem.path, problem.reason)
    write_csv(target, table)
    return table, target
