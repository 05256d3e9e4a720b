"""Light imports and no import circles: `import trilla`, `trilla --help` and a harvest crawl load no network, and the
package's modules import one another in layers."""

import ast
import subprocess
import sys
from pathlib import Path

import trilla

HEAVY = ("torch", "lightning", "timm", "torchvision")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])


def test_import_trilla_and_help_load_no_network():
    assert _loaded_after("import trilla; trilla.TrillaError; trilla.__version__") == []
    assert _loaded_after("from trilla.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass") == []
    assert "torch" in _loaded_after("import trilla; trilla.load_config"), "the lazy names still load what they need"


def test_a_harvest_crawl_loads_no_network():
    """A crawl needs Scrapy, not torch: its site file is checked with the schema's own explanations."""
    assert _loaded_after("import trilla.harvest.crawl, trilla.harvest.spider, trilla.harvest.pictures, trilla.harvest.report") == []


def _imports(path: Path, module: str) -> set[str]:
    """The trilla modules `module` imports, at module level or inside functions (what runs), leaving out
    `if TYPE_CHECKING:` blocks (what never runs)."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
               for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("trilla")}


def test_no_module_imports_itself_through_others():
    root = Path(trilla.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(("trilla", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    graph = {name: {m for m in _imports(path, name) if m in modules and m != name and not name.startswith(m + ".")} for name, path in modules.items()}
    graph = {name: {m for m in targets if m != "trilla"} for name, targets in graph.items()}  # the package root only re-exports lazily
    cycles = []

    def visit(node, stack, done):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)
