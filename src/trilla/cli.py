"""The `trilla` command: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path

import typer

from trilla.errors import TrillaError, write_failed
from trilla.logs import StderrHandler
from trilla.serve.settings import Settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Turn homegrown datasets of images and audio into good classifiers.")


class PredictFormat(str, Enum):
    json = "json"
    csv = "csv"


class ExportFormat(str, Enum):
    onnx = "onnx"


class TableFormat(str, Enum):
    md = "md"
    csv = "csv"
    html = "html"


class ClipFormat(str, Enum):
    wav = "wav"
    flac = "flac"


class LabelExportFormat(str, Enum):
    csv = "csv"
    labelstudio = "labelstudio"


def _logging_from_quiet(quiet: bool) -> bool:
    """Every command's -q, set up once as the option is read (a command whose output is its answers
    makes itself quiet on top)."""
    return quiet


SERVED = Settings()  # a server's defaults, which trilla serve's options show


QUIET = typer.Option(False, "--quiet", "-q", help="only warnings, errors and the result", callback=_logging_from_quiet)
ALLOW_UNFINISHED = typer.Option(False, "--allow-unfinished", help="use a run that failed, was stopped or still trains (its best checkpoint so far)")


def _setup_logging(quiet: bool = False) -> None:
    """Log to the current stderr; a second command in one process replaces the first one's handler."""
    logger = logging.getLogger("trilla")
    for old in [h for h in logger.handlers if getattr(h, "trilla_cli", False)]:
        logger.removeHandler(old)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.trilla_cli = True
    logger.addHandler(handler)
    logging.getLogger("trilla").setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


CONFIG = typer.Argument(None, help="YAML config; optional when --data is given")
DATA = typer.Option(None, "--data", help="folder tree <class>/<file> or CSV manifest")


def _given_config(config: Path | None, data: Path | None, overrides: list[str]):
    """The config a command on a config file and/or --data reads, validated before torch loads."""
    from trilla.config import load_config

    if config is None and data is None:
        raise TrillaError("give a config file or --data FOLDER_OR_CSV")
    return load_config(config, overrides, data)


@app.command()
def train(
    config: Path | None = CONFIG,
    data: Path | None = DATA,
    set_: list[str] = typer.Option([], "--set", help="override a key: --set train.lr=0.01 (repeatable)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue an interrupted run directory"),
    quiet: bool = QUIET,
) -> None:
    """Train a classifier; the last line printed is the run directory."""
    if resume is not None:
        if config or data or set_:
            raise TrillaError("--resume takes only the run directory: the run's own config.yaml is used")
        from trilla.training import train as training

        run = training.resume(resume)
    else:
        resolved = _given_config(config, data, set_)
        from trilla.training import train as training

        run = training.train(resolved)
    metrics = run.metrics
    if "test/accuracy" in metrics:
        typer.echo(f"test accuracy {metrics['test/accuracy']:.2%}, balanced {metrics['test/balanced_accuracy']:.2%}, "
                   f"majority baseline {metrics['test/majority_baseline']:.2%}; report: {run.report}")
    typer.echo(str(run.path))


@app.command()
def evaluate(
    runs: list[Path] = typer.Argument(..., help="run directory; several runs are evaluated as one ensemble (their predictions averaged)"),
    data: Path | None = typer.Option(None, "--data", help="labelled folder or CSV; default: the run's test split"),
    out: Path | None = typer.Option(None, "--out", help="also write the metrics to this JSON file"),
    tta: int = typer.Option(0, "--tta", min=0, help="average over this many augmented views too"),
    allow_unfinished: bool = ALLOW_UNFINISHED,
    quiet: bool = QUIET,
) -> None:
    """Metrics and plots of a run's best model (or several runs' ensemble) on labelled data, preprocessed
    as in training."""
    from trilla.runs import Run

    first, *others = [Run(path) for path in runs]
    metrics, out_dir = first.evaluate(data, out, tta=tta, others=others, allow_unfinished=allow_unfinished)
    typer.echo(json.dumps(metrics, indent=2, sort_keys=True))
    typer.echo(str(out_dir))


@app.command()
def predict(
    run: Path = typer.Argument(..., help="run directory"),
    files: list[Path] = typer.Argument(..., help="image files or folders"),
    top_k: int = typer.Option(5, "--top-k", min=1, help="labels per answer, most probable first"),
    format: PredictFormat = typer.Option(PredictFormat.json, "--format", help="json (one object per line) or csv"),
    meta: list[str] = typer.Option([], "--meta", help="metadata for every file: --meta region=Indo-Pacific (repeatable)"),
    meta_csv: Path | None = typer.Option(None, "--meta-csv", help="CSV with a 'file' column and one column per field"),
    tta: int = typer.Option(0, "--tta", min=0, help="average over this many augmented views too"),
    hop: float | None = typer.Option(None, "--hop", min=0.001, help="sounds longer than the run's clips: seconds between windows (default: half a clip)"),
    windows: bool = typer.Option(False, "--windows", help="also give each window's answer (JSON only)"),
    allow_unfinished: bool = ALLOW_UNFINISHED,
    quiet: bool = QUIET,
) -> None:
    """Top-k labels with probabilities; a file that cannot be read gets an error line, the rest are predicted.
    A sound longer than the run's clips is read in sliding windows and answered as a whole."""
    _setup_logging(quiet=True)  # its stdout is the answers; -q is the default here
    from trilla.predict import answers_csv
    from trilla.runs import Run

    if windows and format != PredictFormat.json:
        raise TrillaError("--windows lists each window's answer, which only --format json can hold")
    records = Run(run).predict(files, top_k=top_k, metadata=_pairs(meta), metadata_table=meta_csv, tta=tta, hop=hop, windows=windows,
                               allow_unfinished=allow_unfinished)
    if format == PredictFormat.json:
        for record in records:
            typer.echo(json.dumps(record, allow_nan=False))
    else:
        typer.echo(answers_csv(records), nl=False)
    failed = [r for r in records if "error" in r]
    if failed:
        typer.echo(f"{len(failed)} of {len(records)} files could not be predicted", err=True)
        raise typer.Exit(1)


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrillaError(f"--meta expects field=value, got {item!r}")
        out[key] = value
    return out


@app.command()
def explain(
    run: Path = typer.Argument(..., help="run directory"),
    files: list[Path] = typer.Argument(..., help="image files or folders"),
    out: Path = typer.Option(..., "--out", help="folder for the heat maps (existing files are kept)"),
    meta: list[str] = typer.Option([], "--meta", help="metadata for every file: --meta region=Indo-Pacific"),
    meta_csv: Path | None = typer.Option(None, "--meta-csv", help="CSV with a 'file' column and one column per field"),
    quiet: bool = QUIET,
) -> None:
    """Grad-CAM heat maps over each image for its predicted class; prints one JSON line per file."""
    _setup_logging(quiet=True)  # its stdout is one JSON line per file
    from trilla.evaluation.explain import explain_files
    from trilla.predict import expand, metadata_per_file
    from trilla.runs import Run

    trained = Run(run)
    paths = expand(files)
    given = metadata_per_file(paths, _pairs(meta), meta_csv, list(trained.config.data.metadata))
    records = explain_files(trained, paths, out, given)
    for record in records:
        typer.echo(json.dumps(record))
    if any("error" in r for r in records):
        raise typer.Exit(1)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run directory"),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx"),
    out: Path | None = typer.Option(None, "--out", help="file to write; default <run>/export/model.onnx"),
    quiet: bool = QUIET,
) -> None:
    """Export the best model (with its metadata inputs) for serving without trilla; prints the file."""
    _setup_logging(quiet=True)
    from trilla.export import export_onnx
    from trilla.runs import Run

    typer.echo(str(export_onnx(Run(run), out)))


@app.command()
def runs(
    root: Path = typer.Argument(Path("runs"), help="a folder of runs (searched recursively)"),
    sort: str | None = typer.Option(None, "--sort", help="column to sort by, e.g. test/balanced_accuracy"),
    format: TableFormat = typer.Option(TableFormat.md, "--format", help="md, csv (every column, for programs) or html"),
    columns: str | None = typer.Option(None, "--columns", help="more columns, comma-separated (train_time_s,best_epoch), or all"),
    quiet: bool = QUIET,
) -> None:
    """Leaderboard of runs (a sweep's, or any folder): the keys they differ in, the main metrics, and a
    flag on runs at the majority baseline."""
    from trilla.evaluation.results import for_people, runs_table, to_html
    from trilla.tables import markdown_table

    table = runs_table(root, sort)
    if format == TableFormat.csv:
        typer.echo(table.to_csv(index=False), nl=False)
    elif format == TableFormat.html:
        typer.echo(to_html(for_people(table, columns).assign(path=table["path"]), f"Runs in {root}"), nl=False)
    else:
        shown = for_people(table, columns)
        shown = shown.assign(at_majority=shown["at_majority"].map({True: "⚠ majority", False: ""}))
        typer.echo(markdown_table(shown, floatfmt="human"))


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="YAML config with a sweep: section"),
    set_: list[str] = typer.Option([], "--set", help="override a key of the base config (repeatable)"),
    workers: int = typer.Option(1, "--workers", min=1, help="trials trained at once, each in its own process"),
    folder: Path | None = typer.Option(None, "--out", "--dir", help="sweep folder; default <run.dir>/<run.name or config name>"),
    quiet: bool = QUIET,
) -> None:
    """Run a grid, random or Optuna sweep; run it again (or on more machines) to resume or join it."""
    from trilla.config import load_raw, with_input_kind
    from trilla.training.sweep import run_sweep

    result = run_sweep(with_input_kind(load_raw(config, set_)), config, folder, workers)
    typer.echo("trials: " + ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items())))
    for label, error in result.failures:
        typer.echo(f"failed {label}: {error}", err=True)
    typer.echo(f"leaderboard: trilla runs {result.path} --sort <metric>")
    typer.echo(str(result.path))


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="run directories, or folders of runs such as a sweep"),
    sort: str | None = typer.Option(None, "--sort", help="metric to plot against each varied key; default test/balanced_accuracy (test/mAP for multi-label)"),
    out: Path = typer.Option(Path("compare"), "--out", help="folder for the plots (existing files are kept)"),
    quiet: bool = QUIET,
) -> None:
    """Overlay the runs' learning curves and plot a metric against every key they differ in."""
    from trilla.evaluation.compare import compare as run_compare

    for path in run_compare(runs, out, sort):
        typer.echo(str(path))


harvest_app = typer.Typer(no_args_is_help=True, help="Build datasets from raw material (songs -> clips, a catalogue site -> labelled pictures).")
app.add_typer(harvest_app, name="harvest")


@harvest_app.command("clips")
def harvest_clips(
    songs: Path = typer.Argument(..., help="folder of songs (wav, flac, ogg, mp3, and what FFmpeg decodes)"),
    out: Path = typer.Argument(..., help="folder for the clips, clips.csv and manifest.csv"),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, help="length of every clip"),
    skip_start: float = typer.Option(0.0, "--skip-start", min=0.0, help="seconds skipped at the start of every song"),
    sample: int | None = typer.Option(None, "--sample", min=1, help="cut only this many clips, drawn at random"),
    seed: int = typer.Option(0, "--seed", help="seed of the random sample (the same seed draws the same clips)"),
    sample_rate: int = typer.Option(44100, "--sample-rate", min=1000, help="the clips' sample rate in Hz"),
    format: ClipFormat = typer.Option(ClipFormat.wav, "--format", help="wav or flac"),
    quiet: bool = QUIET,
) -> None:
    """List every clip of every song, draw a sample and cut it (mono, resampled); cut clips are kept."""
    from trilla.harvest.clips import harvest_clips as run_harvest

    result = run_harvest(songs, out, seconds, skip_start, sample, seed, sample_rate, format.value)
    typer.echo(f"{result.listed} possible clips listed; {result.cut} cut now, {result.kept} already there; "
               f"{len(result.problems)} songs skipped")
    typer.echo(str(result.manifest))


@harvest_app.command("crawl")
def harvest_crawl(
    site: Path = typer.Argument(..., help="SITE.yaml: start URLs, allowed domains, selectors, label rules"),
    out: Path = typer.Argument(..., help="folder for <label>/<picture> and provenance.csv (the report and contact sheets go to OUT/.harvest)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="walk the category tree without downloading pictures and print it"),
    max_items: int | None = typer.Option(None, "--max-items", min=1, help="download at most this many pictures"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted harvest into OUT (pages already fetched come from the cache)"),
    ignore_robots: bool = typer.Option(False, "--ignore-robots", help="do not obey the site's robots.txt (only for a site you may crawl so)"),
    cache: Path | None = typer.Option(None, "--cache", help="the HTTP cache folder; default $TRILLA_CACHE/harvest/http"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also Scrapy's own log: its settings, every page's progress, its statistics"),
    quiet: bool = QUIET,
) -> None:
    """Harvest labelled pictures from a catalogue site: walk its category tree, label each branch by the
    site file's rules, download each product's picture once, and report what was found."""
    from trilla.harvest.crawl import crawl, tree

    if ignore_robots:
        logging.getLogger("trilla").warning("--ignore-robots: the site's robots.txt is not obeyed")
    result = crawl(site, out, dry_run, max_items, resume, ignore_robots, cache, verbose)
    if dry_run:
        typer.echo(tree(result.ledger))
        return
    if result.report is None:
        typer.echo(f"the harvest stopped before the end ({result.ledger.finish}); continue it with: trilla harvest crawl {site} {out} --resume", err=True)
        raise typer.Exit(1)
    typer.echo(f"{result.kept} pictures in {out}; report: {result.report}")
    typer.echo(str(result.report))


@app.command()
def review(
    runs: list[Path] = typer.Argument(..., help="run directories trained on the same data"),
    data: Path | None = typer.Option(None, "--data", help="labelled data to review; default: the first run's"),
    min_votes: int = typer.Option(3, "--min-votes", min=1, help="queue examples at least this many runs got wrong"),
    out: Path = typer.Option(Path("review.csv"), "--out", help="the queue (an existing file is never overwritten)"),
    label: Path | None = typer.Option(None, "--label", help="put the queue into a new labelling project in this folder instead, to relabel in the browser"),
    db: str | None = typer.Option(None, "--db", help="with --label: keep the answers in this database (postgresql://...)"),
    quiet: bool = QUIET,
) -> None:
    """Queue likely label errors: examples most runs got wrong, ranked by confident learning (cleanlab)."""
    from trilla.atomic import write_csv
    from trilla.evaluation.review import review as run_review
    from trilla.paths import free_path

    queue = run_review(runs, data, min_votes)
    counts = (f"{len(queue)} examples queued ({int((queue['votes'] >= min_votes).sum())} with >= {min_votes} votes, "
              f"{int(queue['cleanlab_issue'].sum())} flagged by cleanlab)")
    if label is not None:
        from trilla.label.review import project_from_queue
        from trilla.runs import Run

        project = project_from_queue(label, queue, [Run(run) for run in runs], db)
        typer.echo(f"{counts}; label them with: trilla label serve {label}; then: trilla relabel --from-project {label} --apply")
        typer.echo(str(project.folder))
        return
    target = free_path(out)
    write_csv(target, queue)
    typer.echo(f"{counts}; fill in the new_* columns, then: trilla relabel {target} --apply")
    typer.echo(str(target))


@app.command()
def relabel(
    queue: Path | None = typer.Argument(None, help="a queue from trilla review, with new_* cells filled in"),
    from_project: Path | None = typer.Option(None, "--from-project", help="take the new labels from a project trilla review --label made"),
    db: str | None = typer.Option(None, "--db", help="with --from-project: the answers' database URL; default: the project's own"),
    apply: bool = typer.Option(False, "--apply", help="write the changes (default: only show them)"),
    new_class: bool = typer.Option(False, "--new-class", help="accept labels that are not yet a class of the manifest"),
    quiet: bool = QUIET,
) -> None:
    """Merge corrected labels into the manifest; old values go to its label_history column and a backup."""
    from trilla.evaluation.review import merge
    from trilla.evaluation.review import relabel as run_relabel
    from trilla.tables import markdown_table

    if (queue is None) == (from_project is None):
        raise TrillaError("give either a queue CSV or --from-project PROJECT")
    if from_project is not None:
        from trilla.label import Project
        from trilla.label.review import queue_from_project

        filled, unanswered = queue_from_project(Project(from_project, db))
        if unanswered:
            logging.getLogger("trilla").warning("%d of %d items of %s have no answer yet; their labels stay", unanswered, len(filled), from_project)
        changes = merge(filled, apply, new_class=new_class)
    else:
        changes = run_relabel(queue, apply, new_class=new_class)
    typer.echo(markdown_table(changes) if len(changes) else "no changes in the queue")
    typer.echo(f"{len(changes)} changes " + ("written" if apply else "found; run again with --apply to write them"))


@app.command()
def interpret(
    run: Path = typer.Argument(..., help="run directory"),
    split: str = typer.Option("test", "--split", help="train, val or test"),
    top: int = typer.Option(16, "--top-k", "--top", min=1, help="how many top losses to show"),
    min_count: int = typer.Option(1, "--min-count", min=1, help="most confused: pairs confused at least this often"),
    quiet: bool = QUIET,
) -> None:
    """fastai's interpretation: the top losses as a grid (prediction / actual / loss / probability of the
    actual class) and the most confused pairs; prints the pairs and the folder."""
    from trilla.evaluation.interpret import interpret_run
    from trilla.runs import Run
    from trilla.tables import markdown_table

    losses, confused, out_dir = interpret_run(Run(run), split, top, min_count, progress=not quiet)
    typer.echo(markdown_table(losses.drop(columns="path").head(top), ".3f"))
    typer.echo("most confused (actual -> predicted):")
    typer.echo(markdown_table(confused.head(20)) if len(confused) else f"no pair confused {min_count} time(s) or more")
    typer.echo(str(out_dir))


@app.command("lr-find")
def lr_find_command(
    config: Path | None = CONFIG,
    data: Path | None = DATA,
    set_: list[str] = typer.Option([], "--set", help="override a key: --set model.name=timm (repeatable)"),
    out: Path = typer.Option(Path("lr_find"), "--out", help="folder for lr_find.png (existing files are kept)"),
    steps: int = typer.Option(100, "--steps", min=5, help="training batches the rate grows over"),
    quiet: bool = QUIET,
) -> None:
    """Lightning's learning-rate range test on a config: the loss against the rate, and a suggested rate."""
    resolved = _given_config(config, data, set_)
    from trilla.training.inspect import lr_find

    suggestion, plot = lr_find(resolved, out, steps=steps)
    typer.echo(f"suggested learning rate {suggestion:.3g} (--set train.lr={suggestion:.3g})" if suggestion else "no suggestion: look at the plot")
    typer.echo(str(plot))


@app.command("show-batch")
def show_batch_command(
    config: Path | None = CONFIG,
    data: Path | None = DATA,
    set_: list[str] = typer.Option([], "--set", help="override a key: --set augment.rotate=30 (repeatable)"),
    out: Path = typer.Option(Path("show_batch"), "--out", help="folder for show_batch.png (existing files are kept)"),
    count: int = typer.Option(16, "--count", min=1, help="examples to show"),
    quiet: bool = QUIET,
) -> None:
    """A grid of training examples as the augmentation leaves them (pictures, or spectrograms for sound)."""
    resolved = _given_config(config, data, set_)
    from trilla.training.inspect import show_batch

    typer.echo(str(show_batch(resolved, out, count)))


@app.command()
def manifest(
    folder: Path = typer.Argument(..., help="a folder tree: <class>/<file>, or deeper with --label-level"),
    out: Path | None = typer.Option(None, "--out", help="the CSV to write (never overwritten); default: FOLDER.csv beside the folder"),
    label_level: int | None = typer.Option(None, "--label-level", help="the path part that is the label (-2: the file's folder)"),
    quiet: bool = QUIET,
) -> None:
    """Write a CSV manifest (path, label, level_1, level_2...) of a folder tree, to train on, review and relabel."""
    from trilla.data.sources import write_folder_manifest

    table, target = write_folder_manifest(folder, out, label_level)
    typer.echo(f"{len(table)} files, {table['label'].nunique()} labels; train on it with: trilla train --data {target}")
    typer.echo(str(target))


@app.command()
def serve(
    runs: list[Path] = typer.Argument(None, help="run directories; each becomes one model"),
    label: list[Path] = typer.Option([], "--label", help="also serve this labelling project's page at /label/NAME"),
    db: str | None = typer.Option(None, "--db", help="the labelling projects' database URL (postgresql://...); default: the project's own"),
    quiz_data: Path | None = typer.Option(None, "--quiz-data", help="the quiz's labelled folder or CSV; default: each run's test split"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback by default)"),
    port: int = typer.Option(5000, "--port", min=0, max=65535, help="port to listen on (DEEPaaS's default)"),
    name: list[str] = typer.Option([], "--name", help="the models' names, one per run (default: the runs' names)"),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="server processes, each loading the models (trainings need 1)"),
    token: str | None = typer.Option(None, "--token", envvar="TRILLA_TOKEN", help="bearer token that trainings and labelling answers require"),
    data_root: Path | None = typer.Option(None, "--data-root", help="trainings over HTTP may read data inside this folder only"),
    max_trainings: int = typer.Option(SERVED.max_trainings, "--max-trainings", min=1, max=64, help="trainings over HTTP running at once (more: 429)"),
    max_epochs: int = typer.Option(SERVED.max_epochs, "--max-epochs", min=1, max=100_000, help="the most epochs a training over HTTP may run"),
    max_batch: int = typer.Option(SERVED.max_batch, "--max-batch", min=1, max=4096, help="most windows in one forward pass"),
    max_wait_ms: float = typer.Option(SERVED.max_wait_ms, "--max-wait-ms", min=0, max=10000, help="longest a request waits for others to join its batch"),
    max_upload_mb: float = typer.Option(SERVED.max_upload_mb, "--max-upload-mb", min=0.001, help="larger request bodies (and fetched URLs) are refused with 413"),
    threads: int = typer.Option(0, "--threads", min=0, max=1024, help="torch threads for inference per process; 0: the cores the decoding threads leave"),
    gil_switch_ms: float = typer.Option(SERVED.gil_switch_ms, "--gil-switch-ms", min=0.01, max=1000,
                                        help="how often the interpreter may hand its lock to another thread (Python's own: 5)"),
    urls: bool = typer.Option(SERVED.urls, "--urls/--no-urls", help="predict pictures and sounds at public http(s) URLs"),
    url_allow: list[str] = typer.Option([], "--url-allow", help="also fetch from this network or address:port (10.0.0.0/8, 127.0.0.1:8080)"),
    url_deadline: float = typer.Option(SERVED.url_deadline, "--url-deadline", min=0.1, max=3600, help="seconds a URL fetch may take, headers included"),
    allow_host: list[str] = typer.Option([], "--allow-host", help="without --token, also answer requests for this host name (addresses, localhost, "
                                         "--host and this machine's name always are)"),
    quiet: bool = QUIET,
) -> None:
    """Serve runs over a DEEPaaS-compatible REST API (Swagger UI at /api, schema at /swagger.json), with the
    predict page at / and the quiz at /quiz, and labelling projects at /label/NAME."""
    import socket

    import uvicorn

    from trilla.serve.app import ENVIRONMENT, create_app, exposure, log_access

    runs = list(runs or [])
    if not runs and not label:
        raise TrillaError("give run directories to serve, or --label PROJECT")
    exposed = exposure(host, token)
    if exposed:
        logging.getLogger("trilla").warning(exposed)
    if data_root is not None and not data_root.is_dir():
        raise TrillaError(f"--data-root {data_root} is not a folder")
    cores = max(1, (os.cpu_count() or 1) // workers)
    options = dict(max_upload_mb=max_upload_mb, max_batch=max_batch, max_wait_ms=max_wait_ms, token=token,
                   decode_threads=min(8, cores), torch_threads=threads or max(1, cores - min(8, cores)), gil_switch_ms=gil_switch_ms,
                   data_root=None if data_root is None else str(data_root), trainings=workers == 1,
                   max_trainings=max_trainings, max_epochs=max_epochs, urls=urls, url_allow=list(url_allow), url_deadline=url_deadline,
                   quiz_data=None if quiz_data is None else str(quiz_data), allowed_hosts=[host, socket.gethostname(), *allow_host])
    projects = [str(path) for path in label]
    level = "warning" if quiet else "info"
    log_access(quiet)
    if workers == 1:
        from trilla.label import Project
        from trilla.runs import Run

        api = create_app([Run(path) for path in runs], name or None, [Project(path, db) for path in projects], **options)
        uvicorn.run(api, host=host, port=port, log_level=level, access_log=False)
        return
    os.environ[ENVIRONMENT] = json.dumps({"runs": [str(path) for path in runs], "names": name, "projects": projects, "db": db,
                                          "options": options, "quiet": quiet})
    import shutil
    import tempfile

    metrics = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.mkdtemp(prefix="trilla-metrics-")
    if metrics:  # each worker writes its counts there; /metrics sums them
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    try:
        uvicorn.run("trilla.serve.app:app_from_environment", factory=True, workers=workers, host=host, port=port, log_level=level, access_log=False)
    finally:
        if metrics:
            shutil.rmtree(metrics, ignore_errors=True)


label_app = typer.Typer(no_args_is_help=True, help="Labelling projects: make one, serve its page, export what the annotators said.")
app.add_typer(label_app, name="label")


def _names(text: str | None) -> list[str]:
    return [] if text is None else [part.strip() for part in text.split(",") if part.strip()]


@label_app.command("new")
def label_new(
    project: Path = typer.Argument(..., help="the project folder to create"),
    data: Path = typer.Option(..., "--data", help="folder of pictures or sounds (class folders allowed), or a CSV with a path column"),
    classes: str | None = typer.Option(None, "--classes", help="one class per item: a,b,c"),
    multilabel: str | None = typer.Option(None, "--multilabel", help="any set of these labels per item: a,b,c"),
    plane: str | None = typer.Option(None, "--plane", help="a point on the plane of these two axes: valence,arousal"),
    db: str | None = typer.Option(None, "--db", help="keep the answers in this database (postgresql://...) instead of the project folder"),
    run: Path | None = typer.Option(None, "--run", help="a run whose guesses order the items (least sure first) and can be shown"),
    quiet: bool = QUIET,
) -> None:
    """Make a labelling project over a folder or CSV of pictures or sounds."""
    import shlex

    from trilla.label import Project
    from trilla.runs import Run

    given = [(kind, value) for kind, value in (("classes", classes), ("multilabel", multilabel), ("plane", plane)) if value is not None]
    if len(given) != 1:
        raise TrillaError("say what is labelled with exactly one of --classes, --multilabel or --plane")
    kind, names = given[0]
    made = Project.create(project, data, kind, _names(names), db, None if run is None else Run(run))
    typer.echo(f"{len(made.items())} items to label ({kind}: {', '.join(made.classes or made.axes)}); "
               f"serve it with: {shlex.join(['trilla', 'label', 'serve', str(project)])}")


@label_app.command("serve")
def label_serve(
    project: Path = typer.Argument(..., help="the project folder"),
    run: list[Path] = typer.Option([], "--run", help="also serve these runs (predict page, quiz, API)"),
    db: str | None = typer.Option(None, "--db", help="the answers' database URL; default: the project's own"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback by default)"),
    port: int = typer.Option(5000, "--port", min=0, max=65535, help="port to listen on"),
    token: str | None = typer.Option(None, "--token", envvar="TRILLA_TOKEN", help="bearer token that answers require"),
    quiet: bool = QUIET,
) -> None:
    """Serve a labelling project's page at /label/NAME (the same server as trilla serve --label)."""
    serve(runs=run, label=[project], db=db, quiz_data=None, host=host, port=port, name=[], workers=1, token=token, data_root=None,
          max_trainings=SERVED.max_trainings, max_epochs=SERVED.max_epochs, max_batch=SERVED.max_batch, max_wait_ms=SERVED.max_wait_ms,
          max_upload_mb=SERVED.max_upload_mb, threads=0, gil_switch_ms=SERVED.gil_switch_ms, urls=SERVED.urls, url_allow=[],
          url_deadline=SERVED.url_deadline, allow_host=[], quiet=quiet)


@label_app.command("export")
def label_export(
    project: Path = typer.Argument(..., help="the project folder"),
    format_: LabelExportFormat = typer.Option(LabelExportFormat.csv, "--format", help="csv (a manifest trilla train reads) or labelstudio (tasks with annotations)"),
    out: Path | None = typer.Option(None, "--out", help="where to write it; default: PROJECT/labels.csv or PROJECT/labelstudio.json"),
    media_root: Path | None = typer.Option(None, "--media-root", help="labelstudio: Label Studio's local-files document root, a folder "
                                              "that holds every item; default: the parent of the items' folder"),
    db: str | None = typer.Option(None, "--db", help="the answers' database URL; default: the project's own"),
    quiet: bool = QUIET,
) -> None:
    """Write what the annotators said: the majority label (or mean point), agreement and history per item."""
    from trilla.label import Project
    from trilla.label.export import write_manifest
    from trilla.label.labelstudio import write_labelstudio
    from trilla.paths import free_path

    opened = Project(project, db)
    target = free_path(out or project / ("labels.csv" if format_ == LabelExportFormat.csv else "labelstudio.json"))
    if format_ == LabelExportFormat.csv:
        table, command = write_manifest(opened, target)
        typer.echo(f"{len(table)} items; train on them with: {command}")
    else:
        typer.echo(write_labelstudio(opened, target, media_root))
    typer.echo(str(target))


@label_app.command("stats")
def label_stats(
    project: Path = typer.Argument(..., help="the project folder"),
    db: str | None = typer.Option(None, "--db", help="the answers' database URL; default: the project's own"),
    quiet: bool = QUIET,
) -> None:
    """Items answered, annotators, and Krippendorff's alpha for the whole project."""
    from trilla.label import Project
    from trilla.label.export import agreement

    opened = Project(project, db)
    standing = opened.standing()
    typer.echo(f"{standing['item'].nunique() if len(standing) else 0} of {len(opened.items())} items answered, "
               f"{len(standing)} answers by {standing['annotator'].nunique() if len(standing) else 0} annotators")
    for key, value in agreement(opened).items():
        typer.echo(f"{key}: {'undefined (needs two annotators on one item)' if value is None else f'{value:.3f}'}")


@label_app.command("import")
def label_import(
    project: Path = typer.Argument(..., help="the project folder"),
    export: Path = typer.Argument(..., help="a Label Studio JSON export (tasks with annotations)"),
    users: list[Path] = typer.Option([], "--users", help="Label Studio's users (its /api/users answer saved as JSON), to name the annotators "
                                     "of an export that gives user ids; PROJECT/labelstudio.users.json is read too"),
    db: str | None = typer.Option(None, "--db", help="the answers' database URL; default: the project's own"),
    quiet: bool = QUIET,
) -> None:
    """Read a Label Studio export's annotations into the project as answers (by annotator); importing the
    same export twice adds nothing."""
    from trilla.label import Project
    from trilla.label.labelstudio import from_labelstudio

    known = []
    for path in [*users, *[p for p in [project / "labelstudio.users.json"] if p.is_file()]]:
        try:
            known.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise TrillaError(f"--users {path} is not readable JSON: {err}") from None
    added, skipped = from_labelstudio(Project(project, db), export, known, progress=not quiet)
    for reason in skipped:
        logging.getLogger("trilla").warning("left out: %s", reason)
    typer.echo(f"{added} answers imported, {len(skipped)} left out")


cache_app = typer.Typer(no_args_is_help=True, help="The packed stores: list them, prune what no run uses.")
app.add_typer(cache_app, name="cache")


@cache_app.command("list")
def cache_list(folder: Path | None = typer.Option(None, "--cache", "--dir", help="the store folder; default $TRILLA_CACHE/stores"), quiet: bool = QUIET) -> None:
    """Every packed store with its size, age, idle time, whether a process uses it, and its data."""
    from trilla.data.cache import stores_table
    from trilla.tables import markdown_table

    table = stores_table(folder)
    typer.echo(markdown_table(table, ".1f") if len(table) else "no stores")
    typer.echo(f"{len(table)} stores, {table['size_mb'].sum() / 1000 if len(table) else 0:.2f} GB")


@cache_app.command("prune")
def cache_prune(
    older_than: float | None = typer.Option(None, "--older-than", min=0, help="remove stores unused for more than DAYS"),
    max_size: float | None = typer.Option(None, "--max-size", min=0, help="then remove the least recently used until the cache fits in GB"),
    folder: Path | None = typer.Option(None, "--cache", "--dir", help="the store folder; default $TRILLA_CACHE/stores"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only say what would be removed"),
    quiet: bool = QUIET,
) -> None:
    """Remove stores no process uses: a store in use by a training or being packed is never touched."""
    from trilla.data.cache import prune

    removed, busy = prune(folder, older_than, max_size, dry_run)
    for store in removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {store.root} ({store.bytes / 1e6:.1f} MB, {store.source})")
    for store in busy:
        typer.echo(f"kept {store.root}: in use", err=True)
    typer.echo(f"{len(removed)} stores, {sum(s.bytes for s in removed) / 1e9:.2f} GB {'to free' if dry_run else 'freed'}; {len(busy)} in use kept")


@app.command()
def models(quiet: bool = QUIET) -> None:
    """List the registered models."""
    from trilla.models import list_models

    for name in list_models():
        typer.echo(name)


@app.command()
def demo(root: Path = typer.Option(Path("demo"), "--out", "--dir", help="where the data and runs go"), quiet: bool = QUIET) -> None:
    """Digits from scikit-learn as PNG files, trained with defaults, evaluated, two images predicted."""
    from trilla.demo import run_demo

    report = run_demo(root, echo=typer.echo)
    typer.echo(f"report: {report}")


def main() -> None:
    try:
        app()
    except TrillaError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        refused = write_failed(err.filename or ".", err)
        if refused is None:
            raise
        typer.echo(f"error: {refused}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
