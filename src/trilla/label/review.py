"""The relabel loop through a labelling project, as the music study did it by ear: `trilla review RUN...
--label PROJECT` puts the suspected mislabels into a project (the review queue kept as review.csv in the
project folder; each item shows its current label, and the reviewed runs' votes on request; the items
most runs disagree with come first), people answer on the page, and `trilla relabel --from-project`
fills the queue's new_* cells with what they said (the majority class, or the mean point on the plane)
and merges them into the manifest exactly as `relabel` does from a CSV a person filled in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trilla.atomic import write_csv
from trilla.errors import TrillaError
from trilla.label.export import manifest
from trilla.label.project import PROJECT, Project
from trilla.runs import Run
from trilla.spreadsheet import read_strings

QUEUE = "review.csv"
PLANE = ["valence", "arousal"]


def project_from_queue(folder: str | Path, queue: pd.DataFrame, runs: list[Run], db: str | None = None) -> Project:
    """A new project over the queue's examples (from `review` of `runs`), labelled as the runs were
    trained: their classes, or the valence/arousal plane for runs trained on those coordinates."""
    folder, run = Path(folder), runs[0]
    kind_of_input = run.config.input.type
    if kind_of_input not in ("image", "audio"):
        raise TrillaError(f"the labelling page shows pictures and plays sounds; {run.path} was trained on {kind_of_input}")
    targets = run.config.data.targets
    columns: dict[str, str]
    if targets:
        if sorted(targets) != sorted(PLANE):
            raise TrillaError(f"a review project labels classes or the valence/arousal plane, not the axes {', '.join(targets)}")
        kind, names, columns = "plane", PLANE, {axis: str(targets[axis]) for axis in targets}
    else:
        kind, names, columns = "classes", run.classes, {"label": run.label_columns()[0]}
    if (folder / PROJECT).exists() or (folder / QUEUE).exists():
        raise TrillaError(f"{folder} already holds a project or a review queue; it is kept (choose another folder)")
    if not len(queue):
        raise TrillaError("no example is suspected of a wrong label: there is nothing to relabel")
    votes = {str(Path(path).resolve()): json.loads(counts) for path, counts in zip(queue["path"], queue["model_votes"])}
    given = {str(Path(path).resolve()): label for path, label in zip(queue["path"], queue["label"])}
    voters = len(runs)

    def guesses(paths: list[Path]) -> list[tuple[str | None, float | None]]:
        """The runs' votes, most first, and the share of runs that agree with the current label."""
        out: list[tuple[str | None, float | None]] = []
        for path in paths:
            counts = votes[str(path)]
            out.append((json.dumps([{"label": label, "votes": n, "runs": voters, "probability": n / voters} for label, n in counts.items()]),
                        counts.get(given[str(path)], 0) / voters))
        return out

    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / QUEUE, queue)
    try:
        return Project.create(folder, folder / QUEUE, kind, names, db, guesses=guesses,
                              extra={"review": {"queue": QUEUE, "columns": columns, "runs": [str(r.path) for r in runs]}})
    except BaseException:
        (folder / QUEUE).unlink()  # the queue alone is no project: leave the folder as it was
        raise


def queue_from_project(project: Project) -> tuple[pd.DataFrame, int]:
    """The project's review queue with its new_* cells filled from the answers, each answered row with a
    note of who said what; and how many items have no answer yet (their rows stay empty)."""
    spec = project.review
    if spec is None:
        raise TrillaError(f"{project.folder} was not made by trilla review --label, so it holds no review queue")
    queue = read_strings(project.folder / spec["queue"])
    answered = manifest(project)
    said = answered.set_index("path").to_dict("index") if len(answered) else {}
    notes = []
    for at, path in enumerate(queue["path"]):
        row = said.get(str(Path(path).resolve()))
        if row is None:
            notes.append("")
            continue
        for field, column in spec["columns"].items():
            queue.at[at, f"new_{column}"] = str(row[field])
        notes.append(f"project {project.name}, {row['annotators']} annotator{'' if row['annotators'] == 1 else 's'}, agreement {row['agreement']:.2f}: "
                     + row["label_history"].replace("; ", ", "))
    queue["relabel_note"] = notes
    return queue, len(queue) - sum(1 for note in notes if note)
