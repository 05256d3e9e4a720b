"""The README and the docs cannot drift from the code: every `trilla` command in their command blocks parses
against the real command line (commands, options, types, required arguments), the block a newcomer runs
first (Getting started, "Your own pictures") runs on a tiny generated folder, as written, and the site
builds offline with its reference pages generated from the schema, the CLI and the OpenAPI document."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.main import get_command

from conftest import make_image_folder, trilla
from trilla.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
GENERATED = {"reference/config.md", "reference/cli.md", "reference/rest-api.md"}  # written by docs/hooks.py when the site is built


def blocks(text: str) -> list[list[str]]:
    """The README's ```bash blocks as lists of logical lines (continuations joined, comments cut)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        found.append([line.split(" #")[0].strip() for line in lines if line.strip() and not line.strip().startswith("#")])
    return found


def concrete(line: str) -> list[str]:
    """A documented command with its optional parts taken: `[--format csv|html]` -> `--format csv`,
    `...` dropped, shell quoting undone."""
    line = re.sub(r"\[([^\]]*)\]", lambda m: re.sub(r"(\S+?)\|\S+", r"\1", m.group(1)), line)
    return [part for part in shlex.split(line.replace("...", " ")) if part]


COMMANDS = [concrete(line) for page in PAGES for block in blocks(page.read_text()) for line in block
            if line.startswith("trilla ") or " -m trilla " in line]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_every_documented_command_parses(argv):
    tokens = [part for token in argv for part in (shlex.split(token) if " " in token else [token])]  # srun ... bash -c '...'
    args = tokens[tokens.index("trilla") + 1:]
    command = get_command(app)  # typer's own (vendored) click: told apart by what it does, not by class
    context = command.context_class(command, info_name="trilla")
    while hasattr(command, "list_commands"):  # a group; trilla cache list is a group within the group
        name, args = args[0], args[1:]
        found = command.get_command(context, name)
        assert found is not None, f"the README names a command trilla does not have: {name}"
        command, context = found, found.context_class(found, info_name=name, parent=context)
    command.make_context(context.info_name, args, parent=context.parent)  # raises on an unknown option, a bad value, a missing argument


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_docs_name_no_file_outside_the_repository(page):
    text = page.read_text()
    assert "../shared" not in text and "../seeds" not in text
    for path in re.findall(r"`((?:examples|benchmarks|src|docs|tests)/[^`\s]+)`", text):
        assert any(ROOT.glob(path)), f"{page.name} names {path}"
    for link in re.findall(r"\]\(([^)#\s]+)\)", text):  # relative links and pictures lead to files that exist
        if not link.startswith(("http://", "https://")):
            target = (page.parent / link).resolve()
            generated = target.is_relative_to(ROOT / "docs") and str(target.relative_to(ROOT / "docs")) in GENERATED
            assert target.exists() or generated, f"{page.name} links to {link}"


def test_the_first_block_runs_as_written(tmp_path):
    first = next(b for b in blocks((ROOT / "docs" / "getting-started.md").read_text()) if b and b[0].startswith("trilla train --data photos/"))
    photos = make_image_folder(tmp_path / "photos", {"alpha": 16, "beta": 16}, size=16)
    shutil.copy(photos / "alpha" / "alpha_000.png", tmp_path / "img1.jpg")
    fast = ["--set", "data.image_size=16", "--set", "train.epochs=1", "--set", "train.progress=false", "--set", f"run.dir={tmp_path / 'runs'}"]
    ran = 0
    for line in first:
        argv = concrete(line)[1:]
        if argv[:2] != ["train", "--data"] or argv[2] != "photos/":
            continue
        result = trilla(*argv, *fast, cwd=tmp_path)
        ran += 1
        assert Path(tmp_path, result.stdout.strip().splitlines()[-1], "report.md").is_file()
    assert ran == 1


def test_every_command_has_quiet_and_every_option_a_help_text():
    root = get_command(app)
    found = []

    def visit(group, context, prefix):
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            if hasattr(command, "list_commands"):
                visit(command, command.context_class(command, info_name=name, parent=context), f"{prefix}{name} ")
                continue
            options = [p for p in command.params if p.name != "help"]
            found.append(prefix + name)
            assert any("--quiet" in getattr(p, "opts", ()) and "-q" in getattr(p, "opts", ()) for p in options), f"{prefix}{name} has no -q"
            assert all(getattr(p, "help", None) for p in options), f"{prefix}{name}: {[p.name for p in options if not getattr(p, 'help', None)]}"

    visit(root, root.context_class(root, info_name="trilla"), "")
    assert {"train", "predict", "interpret", "lr-find", "show-batch", "manifest", "cache prune"} <= set(found)


def test_the_site_builds_offline_with_every_key_command_and_route_in_its_reference(tmp_path):
    """`make docs`: strict (a broken link or a missing snippet fails it), nothing loaded from another host, and
    the generated reference names every config key, every command and every route."""
    import subprocess
    import sys

    from trilla.config import Config, DataConfig, TrainConfig

    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT, capture_output=True,
                          text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {path: path.read_text() for path in site.rglob("*.html")}
    loads = {m for text in pages.values() for m in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', text)}
    assert not loads, f"the site loads from other hosts: {sorted(loads)[:5]}"
    config = (site / "reference" / "config" / "index.html").read_text()
    for prefix, section in (("", Config), ("data.", DataConfig), ("train.", TrainConfig)):
        for name in section.model_fields:
            assert f"{prefix}{name}</code>" in config, f"{prefix}{name} missing from the config reference"
    assert "model.name: timm" in config and "input.type: audio" in config
    cli = (site / "reference" / "cli" / "index.html").read_text()
    root = get_command(app)
    context = root.context_class(root, info_name="trilla")
    for name in root.list_commands(context):
        assert f"trilla {name}</code>" in cli, name
    rest = (site / "reference" / "rest-api" / "index.html").read_text()
    assert "POST /v2/models/{name}/predict/" in rest and "GET /label/{name}/api/next" in rest
