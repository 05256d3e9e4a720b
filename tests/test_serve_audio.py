"""`trilla serve` end to end for sound: a clip uploaded as a WAV file, a long recording read in windows,
and AudioSet-style embedding clips uploaded as .npy or as a JSON array, each answered as the run itself
predicts the same bytes."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
from test_multilabel import write_scenes_hdf5

from conftest import make_tone_folder, serving, tone_clip
from trilla import load_config, train

AUDIO = ["train.progress=false", "train.batch_size=16", "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}",
         "input.seconds=0.5", "model={name: rnn, units: [16]}", "train.lr=0.01", "train.epochs=4"]


def wav(samples: np.ndarray, sr: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_audio")
    tones = make_tone_folder(root / "tones", {"low": 16, "high": 16})
    sound = train(load_config(data=tones, overrides=[*AUDIO, f"run.dir={root / 'runs'}"]))
    write_scenes_hdf5(root / "scenes.h5", 300, seed=0)
    scenes = train(load_config(None, ["train.progress=false", f"run.dir={root / 'runs'}", "input={type: embeddings}",
                                      f"data.path={root / 'scenes.h5'}", "model.units=32", "train.epochs=2"]))
    with serving(sound.path, scenes.path, "-q", "--name", "tones", "--name", "scenes") as (base, _, _):
        yield base, sound, scenes, tones


def test_a_sound_clip_and_a_long_recording_answer_as_the_run_predicts_them(runs):
    base, sound, _, tones = runs
    [meta] = [m for m in httpx.get(f"{base}/v2/models/").json()["models"] if m["name"] == "tones"]
    assert meta["input"] == "audio" and meta["classes"] == ["high", "low"]
    clip = sorted(tones.glob("low/*"))[0].read_bytes()
    [expected] = sound.predict([clip], top_k=2)
    answer = httpx.post(f"{base}/v2/models/tones/predict/", files={"data": ("low.wav", clip, "audio/wav")}, params={"top_k": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"]["labels"] == [p["label"] for p in expected["predictions"]]
    assert answer.json()["predictions"]["probabilities"] == pytest.approx([p["probability"] for p in expected["predictions"]], abs=1e-5)
    long = wav(np.concatenate([tone_clip(300.0, 1.5, 8000), tone_clip(1500.0, 1.5, 8000)]))
    [whole] = sound.predict([long], top_k=2)
    body = httpx.post(f"{base}/predict", params={"model": "tones", "top_k": 2}, files=[("files", ("long.wav", long, "audio/wav"))]).json()
    [result] = body["results"]
    assert result["windows_read"] == whole["windows_read"] > 1
    assert [p["probability"] for p in result["predictions"]] == pytest.approx([p["probability"] for p in whole["predictions"]], abs=1e-5)
    silence = httpx.post(f"{base}/v2/models/tones/predict/", files={"data": ("empty.wav", wav(np.zeros(0, np.float32)), "audio/wav")})
    assert silence.status_code == 400 and silence.json()["message"]


def test_embedding_clips_as_npy_or_json_answer_as_the_run_predicts_the_array(runs):
    base, _, scenes, _ = runs
    clip = np.random.default_rng(3).integers(100, 160, (7, 128)).astype(np.uint8)  # 7 seconds: padded to 10 as training was
    [expected] = scenes.predict([clip], top_k=4)
    npy = io.BytesIO()
    np.save(npy, clip)
    files = [("files", ("clip.npy", npy.getvalue(), "application/octet-stream")),
             ("files", ("clip.json", json.dumps(clip.tolist()).encode(), "application/json")),
             ("files", ("wrong.json", json.dumps([[1, 2, 3]]).encode(), "application/json")),
             ("files", ("high.json", json.dumps([[300] * 128]).encode(), "application/json"))]
    body = httpx.post(f"{base}/predict", params={"model": "scenes", "top_k": 4}, files=files).json()
    first, second, wrong, high = body["results"]
    want = {p["label"]: p["probability"] for p in expected["predictions"]}
    for got in (first, second):
        assert {p["label"]: pytest.approx(p["probability"], abs=1e-5) for p in got["predictions"]} == want
    assert "(seconds, 128)" in wrong["error"] and "0-255" in high["error"]
