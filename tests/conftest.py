"""Shared fixtures: tiny generated image folders, an isolated store cache per test, and `trilla serve`
started as a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

# Test tiers: what a test needs beyond trilla's own virtualenv, as markers (`make test-fast` leaves these
# out; `make test` runs everything). Marked here from what each test uses, so no test can forget its mark.
NEEDS = {
    "browser": {"test_pages.py"},  # Debian's Chromium, driven by Playwright
    "deepaas": {"test_deepaas.py"},  # the real deepaas-run, in .venv-deepaas
    "labelstudio": {"test_labelstudio.py"},  # the real Label Studio, in .venv-labelstudio
}


SLOW_S = 2.0  # a test that took this long in the last recorded full run is `slow` (tests/timings.py)


def _timings() -> dict[str, float]:
    with open(Path(__file__).with_name("timings.csv"), newline="", encoding="utf-8") as found:
        return {row["test"]: float(row["seconds"]) for row in csv.DictReader(found)}


def pytest_collection_modifyitems(config, items):
    timings = _timings()
    for item in items:
        for marker, files in NEEDS.items():
            if item.path.name in files:
                item.add_marker(marker)
        if "postgres" in getattr(item, "fixturenames", ()):  # a real PostgreSQL server, started by the fixture
            item.add_marker("postgres")
        if timings.get(item.nodeid, 0.0) >= SLOW_S:
            item.add_marker("slow")
    # the heaviest files first: pytest-xdist hands whole files to the workers in this order, and the workers
    # end together when the long files are not left for last
    weight: dict[str, float] = {}
    for item in items:
        weight[item.nodeid.split("::")[0]] = weight.get(item.nodeid.split("::")[0], 0.0) + timings.get(item.nodeid, 0.0)
    items.sort(key=lambda item: -weight[item.nodeid.split("::")[0]])


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: each worker (and each process it starts) then gets one
    # thread, so two workers' trainings don't fight over the same cores with two threads each.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def quadrant_image(rng: np.random.Generator, quadrant: int, size: int = 24, mode: str = "RGB") -> Image.Image:
    """Noise with a bright blob in one quadrant: the quadrant is the class, learnable in a few epochs."""
    pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    y, x = divmod(quadrant % 4, 2)
    jitter = rng.integers(0, half // 3 + 1, size=2)
    top, left = y * half + jitter[0], x * half + jitter[1]
    pixels[top : top + half - half // 3, left : left + half - half // 3] = rng.integers(180, 256, size=3, dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image.convert("L") if mode == "L" else image


def make_image_folder(root: Path, counts: dict[str, int], size: int = 24, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for quadrant, (label, count) in enumerate(counts.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            quadrant_image(rng, quadrant, size, mode).save(root / label / f"{label}_{i:03d}.png")
    return root


def instrument_picture(rng: np.random.Generator, kind: str, size: int = 128) -> Image.Image:
    """A drawn acoustic guitar (wooden body, round sound hole, six strings) or electric bass (coloured body,
    long neck, four strings, pickups), turned a little: pictures a person recognises in a screenshot."""
    from PIL import ImageDraw

    background = tuple(int(v) for v in rng.integers(215, 250, size=3))
    image = Image.new("RGB", (128, 128), background)
    draw = ImageDraw.Draw(image)
    guitar = kind == "guitar"
    body = tuple(int(v) for v in (rng.integers(150, 215), rng.integers(90, 140), rng.integers(30, 70))) if guitar else \
        tuple(int(v) for v in rng.integers(20, 200, size=3))
    neck_top, strings = (18, 6) if guitar else (4, 4)
    low, up = ((64, 94, 30, 24), (64, 64, 22, 18)) if guitar else ((64, 104, 24, 18), (62, 84, 17, 14))
    for x, y, rx, ry in (low, up):
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=body, outline=(40, 30, 20), width=2)
    draw.rectangle((60, neck_top, 68, 84 if guitar else 96), fill=(110, 70, 40))
    draw.rectangle((57, neck_top - 14, 71, neck_top), fill=(70, 45, 25))
    for k in range(strings // 2):
        for side in (-1, 1):
            draw.ellipse((64 + side * 10 - 2, neck_top - 12 + 5 * k - 2, 64 + side * 10 + 2, neck_top - 12 + 5 * k + 2), fill=(200, 200, 200))
    if guitar:
        draw.ellipse((55, 70, 73, 88), fill=(25, 15, 10))
    else:
        draw.rectangle((56, 88, 72, 93), fill=(20, 20, 20))
        draw.rectangle((56, 100, 72, 105), fill=(20, 20, 20))
    for k in range(strings):
        x = 61 + k * 6 / max(1, strings - 1)
        draw.line((x, neck_top, x, 112 if guitar else 116), fill=(235, 235, 225), width=1)
    turned = image.rotate(float(rng.uniform(-15, 15)), resample=Image.BICUBIC, fillcolor=background,
                          translate=tuple(int(v) for v in rng.integers(-8, 9, size=2)))
    return turned.resize((size, size), Image.LANCZOS) if size != 128 else turned


def make_instrument_folder(root: Path, counts: dict[str, int], size: int = 128, seed: int = 0) -> Path:
    """guitar/<n>.png and bass/<n>.png drawn by `instrument_picture`."""
    rng = np.random.default_rng(seed)
    for kind, count in counts.items():
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            instrument_picture(rng, kind, size).save(root / kind / f"{kind}_{i:03d}.png")
    return root


def melody_clip(mood: str, sr: int, seed: int = 0) -> np.ndarray:
    """Four plucked notes: a major arpeggio going up ('happy') or a minor one going down ('sad'), so the
    waveform shows four attacks and the ear hears a tune."""
    rng = np.random.default_rng(seed)
    root = 220.0 * 2 ** (rng.integers(0, 5) / 12)
    steps = [0, 4, 7, 12] if mood == "happy" else [12, 7, 3, 0]
    notes = []
    for step in steps:
        t = np.arange(int(0.35 * sr)) / sr
        tone = sum(np.sin(2 * np.pi * root * 2 ** (step / 12) * h * t) / h for h in (1, 2, 3))
        notes.append(tone * np.exp(-5 * t))
    clip = np.concatenate(notes)
    return (0.3 * clip + 0.005 * rng.standard_normal(len(clip))).astype(np.float32)


def make_melody_folder(root: Path, counts: dict[str, int], sr: int = 16000) -> Path:
    """happy/<n>.wav and sad/<n>.wav drawn by `melody_clip`."""
    import soundfile as sf

    for mood, count in counts.items():
        (root / mood).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            sf.write(root / mood / f"{mood}_{i:03d}.wav", melody_clip(mood, sr, seed=i), sr)
    return root


TRILLA = [sys.executable, "-m", "trilla"]


def trilla(*args, check=True, cwd=None, timeout=600):
    """The `trilla` command as a user runs it (its own process, its real exit status)."""
    result = subprocess.run([*TRILLA, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"trilla {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def docs_example(name: str):
    """docs/examples/<name>.py imported as the docs show it (importing an example registers what it
    defines), and forgotten afterwards, so the next import registers it again."""
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a codec pickled for the packing workers is found by its module's name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def listening(command: list[str], ready: str, timeout: float = 120, env: dict | None = None, cwd=None):
    """A server `command` (ending in its port option, given a free loopback port) until the block ends;
    yields (base URL, process, log file) once `ready` answers 200. Its output goes to a file, so a chatty
    server never blocks on a full pipe."""
    import httpx

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="server-", suffix=".log", delete=False)
    process = subprocess.Popen([*map(str, command), str(port)], stdout=log, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})}, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(base + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command[0]} did not start: {Path(log.name).read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, process, Path(log.name)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def serving(*args, env: dict | None = None):
    """`trilla serve ARGS` on a free loopback port (see `listening`)."""
    return listening([*TRILLA, "serve", *args, "--port"], "/readyz", env=env)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's, which make test installs) in a temporary folder on a free
    loopback port, for this test session; yields a function giving a fresh empty database's URL. As
    root, the server runs as the postgres user (PostgreSQL refuses root)."""
    import glob
    import pwd
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert found, "PostgreSQL is missing: make test installs Debian's postgresql (apt-get install postgresql)"
    bin_dir = Path(found[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="trilla-pg-", dir="/tmp"))
    if as_user:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    root.chmod(0o755)
    port = free_port()
    subprocess.run([*as_user, bin_dir / "initdb", "-D", root / "data", "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", root / "data", "-o", options, "-l", root / "log", "-w", "start"], check=True, capture_output=True)
    made = iter(range(10**6))

    def database() -> str:
        import sqlalchemy

        name = f"db{next(made)}"
        admin = sqlalchemy.create_engine(f"postgresql://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", root / "data", "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TRILLA_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images", {"alpha": 30, "beta": 30, "gamma": 30})


def make_region_tree(root: Path, per_species: int = 30, size: int = 24, seed: int = 0) -> Path:
    """Region/Species/photo.png where a species' picture shows only half of what defines it.

    Species `q{k}-{region}` is a blob in quadrant k photographed in that region: the picture tells the
    quadrant, only the region (a path level) tells the two species of a quadrant apart.
    """
    rng = np.random.default_rng(seed)
    for region in ("east", "west"):
        for quadrant in (0, 3):
            folder = root / region / f"q{quadrant}-{region}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_species):
                quadrant_image(rng, quadrant, size).save(folder / f"{i:03d}.png")
    return root


def tone_clip(freq: float, seconds: float, sr: int, rate: float = 0.0, seed: int = 0) -> np.ndarray:
    """A sine at `freq` (pitch) pulsed `rate` times a second (0 = steady), with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28))
    if rate:
        x *= 0.3 + 0.7 * (np.sin(2 * np.pi * rate * t) > 0)
    return (0.4 * x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_tone_folder(root: Path, counts: dict[str, int], sr: int = 8000, seconds=(0.5, 0.5)) -> Path:
    """<class>/<n>.wav: 'low' at about 300 Hz, 'high' at about 2 kHz; lengths drawn from `seconds`."""
    import soundfile as sf

    pitch = {"low": 300.0, "high": 2000.0}
    rng = np.random.default_rng(1)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            length = float(rng.uniform(*seconds))
            sf.write(root / label / f"{i:03d}.wav", tone_clip(pitch[label] * rng.uniform(0.9, 1.1), length, sr, seed=i), sr)
    return root


def make_affect_manifest(root: Path, n: int = 80, sr: int = 8000, seconds: float = 0.5) -> Path:
    """clips/<n>.wav with valence (the pitch: high = pleasant) and arousal (pulses: fast = energetic)."""
    import soundfile as sf

    rng = np.random.default_rng(2)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        valence, arousal = rng.uniform(-1, 1, size=2)
        freq = 1500.0 if valence >= 0 else 300.0
        clip = tone_clip(freq * rng.uniform(0.9, 1.1), seconds, sr, rate=16.0 if arousal >= 0 else 2.0, seed=i)
        sf.write(root / "clips" / f"{i:03d}.wav", clip, sr)
        rows.append({"path": f"clips/{i:03d}.wav", "valence": round(valence, 3), "arousal": round(arousal, 3)})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"
