"""`trilla harvest clips`: a folder of songs -> a sample of fixed-length clips, as the music study's
lister.py (every possible clip to a CSV), selector.py (a random sample) and slicer.py (cut, mono, resampled).

Clips are named after their song and start (`<song>_<start ms>ms.wav`, in the song's sub-folder), so a
re-run finds the clips already cut and skips them, and adding songs never renames a clip. The manifest
names each clip's song (`song`), so that a run holds out whole songs (`data.split.group_column: auto`):
clips of one song in training and test would measure memory of the song.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from trilla.atomic import replacing, write_csv
from trilla.data.sources import SONG, Problem, visible_files
from trilla.errors import TrillaError
from trilla.kinds.audio import decode as audio

log = logging.getLogger("trilla")

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16"}


@dataclass
class Harvest:
    listed: int = 0
    cut: int = 0
    kept: int = 0
    problems: list[Problem] = field(default_factory=list)
    manifest: Path | None = None


def harvest_clips(
    songs: Path, out: Path, seconds: float = 10.0, skip_start: float = 0.0, sample: int | None = None, seed: int = 0,
    sample_rate: int = 44100, fmt: str = "wav", progress: bool = True,
) -> Harvest:
    """List, sample and cut; writes `clips.csv` (every possible clip) and `manifest.csv` (the sample; new
    clips are appended to an existing manifest, whose rows and columns are kept)."""
    songs, out = Path(songs), Path(out)
    if fmt not in SUBTYPES:
        raise TrillaError(f"--format must be one of {', '.join(SUBTYPES)}, not {fmt!r}")
    if not songs.is_dir():
        raise TrillaError(f"songs folder {songs} does not exist")
    if out.resolve() == songs.resolve() or songs.resolve() in out.resolve().parents:
        raise TrillaError("the output folder must not be inside the songs folder (clips would be listed as songs next time)")
    result = Harvest()
    rows = []
    for song in tqdm(visible_files(songs), desc="listing songs", unit="song", disable=None if progress else True):
        try:
            length = audio.duration(song)
        except audio.AudioError as err:
            result.problems.append(Problem(str(song), str(err)))
            continue
        start = skip_start
        while start + seconds <= length + 1e-6:
            rows.append({SONG: str(song.relative_to(songs)), "start": round(start, 3), "end": round(start + seconds, 3)})
            start += seconds
    if not rows:
        raise TrillaError(f"no {seconds} s clips found in {songs}" + (f" ({len(result.problems)} unreadable files)" if result.problems else ""))
    out.mkdir(parents=True, exist_ok=True)
    listing = pd.DataFrame(rows)
    listing.to_csv(out / "clips.csv", index=False)
    result.listed = len(listing)
    chosen = listing
    if sample is not None and sample < len(listing):
        chosen = listing.iloc[np.sort(np.random.default_rng(seed).choice(len(listing), sample, replace=False))]
    chosen = chosen.assign(path=[str(Path(f).with_suffix("").as_posix()) + f"_{int(round(s * 1000)):08d}ms.{fmt}" for f, s in zip(chosen[SONG], chosen["start"])])
    failed = set()
    for song, group in tqdm(chosen.groupby(SONG, sort=False), desc="cutting clips", unit="song", disable=None if progress else True):
        todo = [(p, s) for p, s in zip(group["path"], group["start"]) if not (out / p).is_file()]
        result.kept += len(group) - len(todo)
        if not todo:
            continue
        length = int(round(seconds * sample_rate))
        for path, start in todo:
            try:  # only the clip is decoded: a ten-hour recording costs what its clips cost
                clip = audio.fit(audio.load(songs / song, sample_rate, max_samples=length, start=start), length)
            except audio.AudioError as err:
                result.problems.append(Problem(str(songs / song), str(err)))
                failed.add(song)
                break
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with replacing(target) as tmp:
                sf.write(tmp, clip, sample_rate, subtype=SUBTYPES[fmt], format=fmt.upper())
            result.cut += 1
    for problem in result.problems:
        log.warning("skipped %s: %s", problem.path, problem.reason)
    manifest = chosen[~chosen[SONG].isin(failed)][["path", SONG, "start", "end"]]
    result.manifest = out / "manifest.csv"
    if result.manifest.is_file():  # labels a person added to an earlier manifest are kept
        earlier = pd.read_csv(result.manifest, keep_default_na=False, dtype=str).rename(columns={"file": SONG})  # an older release's name
        manifest = pd.concat([earlier, manifest[~manifest["path"].isin(earlier["path"])].astype(str)], ignore_index=True).fillna("")
    write_csv(result.manifest, manifest)
    return result
