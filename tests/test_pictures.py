"""Pictures as they are: decompression bombs and huge headers skipped before decoding, high bit depths
scaled rather than clipped, degenerate shapes noted, and the same guard when predicting."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder, trilla
from trilla.config import load_config
from trilla.data.datamodule import load_data
from trilla.errors import Unreadable
from trilla.kinds.image import decode as images
from trilla.kinds.image.kind import ImageCodec, ImagePreprocessor


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` grey pixels: a real header, a few bytes of image data, as a
    decompression bomb looks before it is decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    root = make_image_folder(tmp_path / "photos", {"a": 12, "b": 12}, size=24)
    (root / "a" / "bomb.png").write_bytes(png_header(40_000, 40_000))  # 1600 Mpx in a few hundred bytes
    (root / "b" / "huge.png").write_bytes(png_header(13_000, 13_000))  # under PIL's own limit, over trilla's
    deep = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(deep).save(root / "a" / "sixteen_bit.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "b" / "one_pixel.png")
    Image.new("RGB", (10_000, 200), (10, 200, 10)).save(root / "b" / "panorama.png")
    return root


@pytest.mark.parametrize("size", ["auto", 32])  # the size probe reads every header; a fixed size decodes straight away
def test_bombs_are_skipped_and_listed_and_odd_pictures_noted(tmp_path, odd_folder, size):
    config = load_config(None, [f"data.image_size={size}", f"data.store={tmp_path / 'stores'}"], odd_folder)
    data = load_data(odd_folder, config, progress=False)
    skipped = {Path(p.path).name: p.reason for p in data.problems}
    assert set(skipped) == {"bomb.png", "huge.png"}
    assert "over the limit of 64 Mpx (input.max_pixels)" in skipped["bomb.png"]
    assert "13000x13000 = 169 Mpx" in skipped["huge.png"]
    noted = {Path(p.path).name: p.reason for p in data.notes}
    assert set(noted) == {"one_pixel.png", "panorama.png"}
    assert "one pixel" in noted["one_pixel.png"] and "strip 1 px thick" in noted["panorama.png"]


def test_sixteen_bit_pictures_are_scaled_not_clipped_and_predicted_the_same(tmp_path, odd_folder):
    config = load_config(None, ["data.image_size=32", "data.channels=grey", f"data.store={tmp_path / 'stores'}"], odd_folder)
    data = load_data(odd_folder, config, progress=False)
    position = data.paths.index(str(odd_folder / "a" / "sixteen_bit.png"))
    stored = np.asarray(data.store.array[data.rows[position]])[..., 0]
    assert (stored == 255).mean() < 0.01 and abs(stored.mean() - 127.5) < 2  # a ramp from black to white, as a viewer shows it
    assert stored.min() == 0 and stored.max() == 255
    prepared = ImagePreprocessor(data.store.codec).prepare((odd_folder / "a" / "sixteen_bit.png").read_bytes())
    np.testing.assert_array_equal(prepared["image"][0][..., 0], stored)


def test_predicting_a_bomb_is_that_item_s_error_and_the_limit_is_configurable(tmp_path):
    codec = ImageCodec(16, "rgb")
    with pytest.raises(Unreadable, match="over the limit of 64 Mpx"):
        ImagePreprocessor(codec).prepare(png_header(40_000, 40_000))
    with pytest.raises(Unreadable, match="over the limit"):
        ImagePreprocessor(codec).prepare(Image.new("L", (9000, 8000)))  # 72 Mpx handed over already decoded
    small = ImageCodec(16, "rgb", max_pixels=1000)
    picture = io.BytesIO()
    Image.new("RGB", (40, 40)).save(picture, "PNG")
    with pytest.raises(Unreadable, match="40x40 = 0 Mpx, over the limit of 0.001 Mpx"):
        ImagePreprocessor(small).prepare(picture.getvalue())
    assert load_config(None, ["input.max_pixels=1000"]).input.max_pixels == 1000


def test_a_big_jpeg_is_decoded_at_reduced_scale_like_the_full_decode(tmp_path):
    ramp = np.linspace(0, 255, 3000, dtype=np.float64)
    photo = np.stack([np.tile(ramp, (2000, 1)), np.tile(ramp[::-1], (2000, 1)), np.full((2000, 3000), 90.0)], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=90)
    reduced = images.decode(buffer.getvalue(), 64, "rgb")
    full = images.fit(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), 64, "rgb")
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        img.draft(None, (64, 64))
        assert img.size == (375, 250)  # 1/8 scale: 64 times fewer pixels decoded
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 3


def test_training_on_a_folder_with_bombs_runs_and_reports_them(tmp_path, odd_folder):
    result = trilla("train", "--data", odd_folder, "--set", f"run.dir={tmp_path / 'runs'}", "--set", "train.epochs=1",
                    "--set", "data.image_size=auto", "--set", "train.progress=false")
    run = Path(result.stdout.strip().splitlines()[-1])
    report = (run / "report.md").read_text()
    assert "**2 files skipped**" in report and "bomb.png" in report
    assert "**2 files used with a warning**" in report and "panorama.png" in report
