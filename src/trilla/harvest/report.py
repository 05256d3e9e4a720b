"""What a harvest tells a person: OUT/provenance.csv (where every kept picture came from; a manifest to
train on), and in OUT/.harvest/ (where training never looks: a hidden folder is no data) report.md
(counts per label and category path, placeholders, duplicates, conflicts, errors, branches not walked)
and a contact sheet per label (contact_<label>.png), so what each label holds is seen at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import ImageOps

from trilla.atomic import write_csv, write_text
from trilla.figures import plot_grid
from trilla.harvest.pictures import PROVENANCE, Assembly
from trilla.harvest.site import Site
from trilla.harvest.spider import STAGING, Ledger
from trilla.kinds.image.decode import open_picture
from trilla.tables import markdown_table

SHEET = 48  # pictures on a contact sheet, spread over the label's files
THUMB = 96


def contact_sheet(out: Path, label: str, files: list[str]) -> Path:
    """A grid of up to SHEET of a label's pictures (evenly spread over its sorted files), named, in OUT/.harvest."""
    chosen = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, min(SHEET, len(files))).round().astype(int))]
    thumbs = []
    for file in chosen:
        with open_picture(out / file) as img:
            thumbs.append(np.asarray(ImageOps.pad(img.convert("RGB"), (THUMB, THUMB), color=(255, 255, 255))))
    path = out / STAGING / f"contact_{label}.png"
    plot_grid(thumbs, [Path(f).stem[:18] for f in chosen], path, title=f"{label}: {len(chosen)} of {len(files)} pictures", columns=8)
    return path


def write_report(out: Path, site: Site, ledger: Ledger, assembly: Assembly, ignore_robots: bool) -> Path:
    kept = assembly.kept
    write_csv(out / PROVENANCE, kept)
    per_label = kept.groupby("label").size().reindex(site.label_names, fill_value=0)
    sheets = {label: contact_sheet(out, label, sorted(kept.loc[kept["label"] == label, "path"])) for label in per_label.index if per_label[label]}
    paths = kept.groupby(["category_path", "label"]).size().reset_index(name="pictures")
    skipped = [n for n in sorted(ledger.nodes.values(), key=lambda n: n.path) if n.skipped]
    lines = [
        "# Harvest report",
        "",
        f"Start: {', '.join(site.start_urls)}; allowed domains: {', '.join(site.allowed_domains)}; "
        f"robots.txt {'ignored (--ignore-robots)' if ignore_robots else 'obeyed'}.",
        "",
        f"{len(kept)} pictures kept from {len(ledger.tiles)} product tiles in labelled listings "
        f"({len(ledger.pictures)} pictures downloaded); {len(assembly.placeholders)} placeholders skipped, "
        f"{len(assembly.duplicates)} duplicates left out, {len(assembly.conflicts)} conflicts left out, {len(ledger.errors)} errors, "
        f"{ledger.unlabelled} products in listings no rule labels" + (f", {ledger.over_cap} over the per-label cap" if ledger.over_cap else "")
        + (f", {len(assembly.left_out)} products left out that no category can vouch for" if assembly.left_out else "") + ".",
        "",
        "## Per label",
        "",
        markdown_table(pd.DataFrame({"label": per_label.index, "pictures": per_label.values,
                                     "contact sheet": [f"[{sheets[k].name}]({sheets[k].name})" if k in sheets else "" for k in per_label.index]})),
        "",
        *[f"![{label}]({path.name})\n" for label, path in sheets.items()],
        "## Per category path",
        "",
        markdown_table(paths) if len(paths) else "none",
        "",
        "## Branches not walked",
        "",
        markdown_table(pd.DataFrame({"category path": ["/".join(n.path) for n in skipped], "url": [n.url for n in skipped],
                                     "why": [n.skipped for n in skipped]})) if skipped else "none",
        "",
        f"## Placeholders skipped ({len(assembly.placeholders)})",
        "",
        markdown_table(pd.DataFrame(assembly.placeholders)) if assembly.placeholders else "none",
        "",
        f"## Duplicates left out ({len(assembly.duplicates)})",
        "",
        markdown_table(pd.DataFrame(assembly.duplicates)) if assembly.duplicates else "none",
        "",
        f"## Conflicts: the same picture under two labels, left out ({len(assembly.conflicts)})",
        "",
        markdown_table(pd.DataFrame([{"image_urls": " ".join(c["image_urls"]), "labels": ", ".join(c["labels"]),
                                      "category_paths": ", ".join(c["category_paths"])} for c in assembly.conflicts])) if assembly.conflicts else "none",
        "",
        f"## Products no category can vouch for, left out ({len(assembly.left_out)})",
        "",
        markdown_table(pd.DataFrame(assembly.left_out)) if assembly.left_out else "none",
        "",
        f"## Errors ({len(ledger.errors)})",
        "",
        markdown_table(pd.DataFrame(ledger.errors, columns=["url", "reason"])) if ledger.errors else "none",
        "",
        *([f"Removed {len(assembly.removed)} pictures an earlier run had placed: {', '.join(assembly.removed)}.", ""] if assembly.removed else []),
        f"Train on it: `trilla train --data {out / PROVENANCE}` (the kept pictures, with their provenance as columns).",
        "",
    ]
    return write_text(out / STAGING / "report.md", "\n".join(lines))
