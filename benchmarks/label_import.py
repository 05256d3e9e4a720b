"""Speed check (issue 44, item 3): importing a Label Studio export of 10 000 answers.

`trilla label import` (from_labelstudio: every answer of the export in one transaction) against the
reference, the same answers stored one transaction each through `Project.answer` (what the import did
before), on the same project layout and SQLite settings (WAL, synchronous=FULL). The two alternate for
a few rounds, each into a fresh project, and the medians are compared.

    .venv/bin/python benchmarks/label_import.py [--items 200] [--annotators 50] [--rounds 3]

Writes benchmarks/results/label_import.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trilla.label import Project
from trilla.label.labelstudio import from_labelstudio, to_labelstudio


def pictures(root: Path, items: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(items):
        folder = root / ("alpha" if i % 2 else "beta")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "label_import.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="label-import-"))
    data = pictures(work / "pics", args.items)
    template = Project.create(work / "template", data, "classes", ["alpha", "beta"])
    tasks = to_labelstudio(template)["tasks"]
    for task in tasks:
        task["annotations"] = [{"completed_by": {"email": f"a{n}@example.org"}, "result": [
            {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [["alpha", "beta"][n % 2]]}}]}
            for n in range(args.annotators)]
    export = work / "export.json"
    export.write_text(json.dumps(tasks))
    answers = [(t["data"]["trilla_item"], f"a{n}@example.org", ["alpha", "beta"][n % 2]) for t in tasks for n in range(args.annotators)]
    times: dict[str, list[float]] = {"trilla label import (one transaction)": [], "one transaction per answer (reference)": []}
    for round_ in range(args.rounds):
        project = Project.create(work / f"import-{round_}", data, "classes", ["alpha", "beta"])
        start = time.perf_counter()
        added, skipped = from_labelstudio(project, export, progress=False)
        times["trilla label import (one transaction)"].append(time.perf_counter() - start)
        assert added == len(answers) and not skipped
        project = Project.create(work / f"each-{round_}", data, "classes", ["alpha", "beta"])
        start = time.perf_counter()
        for item, annotator, value in answers:
            project.answer(item, annotator, value)
        times["one transaction per answer (reference)"].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = medians["one transaction per answer (reference)"]
    lines = [
        "# Importing a Label Studio export of 10 000 answers",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; SQLite in {tempfile.gettempdir()}. "
        f"{args.items} items x {args.annotators} annotators = {len(answers)} answers, {args.rounds} rounds, alternating.",
        "",
        "| how | median s | rounds s | answers/s | speed-up |",
        "|---|---|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(f"| {name} | {medians[name]:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {len(answers) / medians[name]:.0f} "
                     f"| {reference / medians[name]:.1f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
