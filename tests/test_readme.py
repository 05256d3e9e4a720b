"""The README cannot drift from the code: every `trilla` command in its command blocks parses against
the real command line (commands, options, types, required arguments), and the block a newcomer runs
first ("Train on your own pictures") runs on a tiny generated folder, as written."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.main import get_command

from conftest import make_image_folder, trilla
from trilla.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


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


COMMANDS = [concrete(line) for block in blocks(README.read_text()) for line in block
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


def test_the_readme_names_no_file_outside_the_repository():
    text = README.read_text()
    assert "../shared" not in text and "../seeds" not in text
    for path in re.findall(r"`((?:examples|benchmarks|src)/[^`\s]+)`", text):
        assert any(README.parent.glob(path.replace("*", "*"))), path


def test_the_first_block_runs_as_written(tmp_path):
    first = next(b for b in blocks(README.read_text()) if b and b[0].startswith("trilla train --data photos/"))
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
