"""Audio as a first-class input: decoding, the store, spectrograms, the audio models, affect targets."""


import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import make_affect_manifest, make_tone_folder, tone_clip
from trilla import load_config, train
from trilla.config import AudioAugmentConfig, AudioInput
from trilla.data import store as store_mod
from trilla.errors import TrillaError
from trilla.kinds.audio import decode as audio
from trilla.kinds.audio import spectrogram
from trilla.kinds.audio.augment import SpectrogramAugment
from trilla.kinds.audio.kind import AudioCodec, AudioKind

FAST = ["train.progress=false", "train.batch_size=16", "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}"]


def _config(tmp_path, data, *extra):
    return load_config(data=data, overrides=[*FAST, f"run.dir={tmp_path / 'runs'}", f"data.store={tmp_path / 'store'}", *extra])


def test_decodes_common_formats_and_ffmpeg_ones_and_reports_bad_files(tmp_path):
    import av

    sr, x = 22050, tone_clip(440.0, 1.0, 22050)
    sf.write(tmp_path / "a.wav", np.stack([x, x], 1), sr)  # stereo -> mono
    sf.write(tmp_path / "a.flac", x, sr)
    sf.write(tmp_path / "a.ogg", x, sr)
    with av.open(str(tmp_path / "a.m4a"), "w") as out:  # AAC in MP4: only FFmpeg reads it
        stream = out.add_stream("aac", rate=sr)
        frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    for name in ("a.wav", "a.flac", "a.ogg", "a.m4a"):
        y = audio.load(tmp_path / name, 8000)
        assert abs(len(y) - 8000) < 1200, name  # resampled to 8 kHz (AAC adds priming samples)
        spectrum = np.abs(np.fft.rfft(y[:4096]))
        assert abs(np.argmax(spectrum) * 8000 / 4096 - 440) < 10, name
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(audio.AudioError):
        audio.load(tmp_path / "bad.wav", 8000)


def test_store_keeps_lengths_and_spectrogram_matches_specgram(tmp_path):
    from matplotlib import mlab

    sr = 8000
    (tmp_path / "s").mkdir()
    for i, seconds in enumerate((1.0, 0.4)):
        sf.write(tmp_path / "s" / f"{i}.wav", tone_clip(500.0, seconds, sr, seed=i), sr)
    (tmp_path / "s" / "junk.wav").write_text("nope")
    paths = sorted((tmp_path / "s").iterdir())
    packed = store_mod.open_or_build(paths, AudioCodec(sr), tmp_path / "c", progress=False)
    assert packed.array.shape == (3, 8000) and packed.lengths.tolist() == [8000, 3200, 0]
    assert "not a readable sound" in packed.problems[0].reason
    cfg = AudioInput(type="audio", features="spectrogram", sample_rate=sr, n_fft=256, hop=128, every=2)
    features = spectrogram.cached_spectrograms(packed, cfg, progress=False)
    assert features.shape == (3, cfg.frames(8000), 129)
    assert spectrogram.frame_counts(packed, cfg).tolist()[:2] == [cfg.frames(8000), cfg.frames(3200)]
    pxx, _, times = mlab.specgram(AudioCodec.waves(packed.array[0]), NFFT=256, Fs=sr, noverlap=128, window=np.hanning(256), detrend="none")
    ours, theirs = features[0].astype(np.float64), 10 * np.log10(np.maximum(pxx[:, ::2].T, 1e-10))
    assert ours.shape == theirs.shape == (len(times[::2]), 129)
    loud = theirs > theirs.max() - 60  # the same spectrum up to specgram's constant scaling, which
    loud[:, [0, -1]] = False  # doubles every bin but DC and Nyquist (one-sided density)
    difference = (ours - theirs)[loud]
    assert difference.std() < 0.1, difference.std()
    again = spectrogram.cached_spectrograms(packed, cfg, progress=False)
    assert again.filename == features.filename


@pytest.mark.parametrize("model", ["rnn", "panns_cnn", "spectro_cnn"])
def test_audio_models_learn_pitch_from_clips_of_different_lengths(tmp_path, model):
    data = make_tone_folder(tmp_path / "tones", {"low": 24, "high": 24}, seconds=(0.25, 0.6))
    extra = {"rnn": ["model={name: rnn, units: [16]}", "train.lr=0.01"],
             "panns_cnn": ["model={name: panns_cnn, channels: [8, 16, 16, 32], embedding: 32}", "train.lr=0.01"],
             "spectro_cnn": ["model={name: spectro_cnn, conv: [{maps: 8}, {maps: 16}], global_pool: avg}", "train.lr=0.01"]}[model]
    run = train(_config(tmp_path, data, "train.epochs=8", *extra))
    assert run.metrics["test/accuracy"] >= 0.9, run.metrics
    info = run.info
    assert info["data"]["input"]["frames"] is None and info["data"]["input"]["bins"] == 32
    if model == "rnn":
        assert info["model_summary"] == "GRU_l1_o2_d0.5" and run.config.train.optimizer == "rmsprop"
    clip = tmp_path / "one.wav"
    sf.write(clip, tone_clip(2000.0, 0.3, 8000), 8000)
    (tmp_path / "broken.mp3").write_text("no")
    records = run.predict([clip, tmp_path / "broken.mp3"])
    assert records[0]["predictions"][0]["label"] == "high"
    assert "error" in records[1]
    assert "sound files at 8000 Hz" in run.report.read_text()


def test_spectrogram_features_are_computed_once_for_all_epochs(tmp_path, monkeypatch):
    data = make_tone_folder(tmp_path / "tones", {"low": 10, "high": 10})
    calls = []
    original = spectrogram.Spectrogram.forward
    monkeypatch.setattr(spectrogram.Spectrogram, "forward", lambda self, w: calls.append(len(w)) or original(self, w))
    config = _config(tmp_path, data, "train.epochs=3", "input.seconds=0.5", "model={name: rnn, units: [4]}")
    train(config)
    assert sum(calls) == 20  # every clip once, when the cache was built, and never during the 3 epochs
    train(config)
    assert sum(calls) == 20  # a second run reuses the cache


def test_spectrogram_augmentation_changes_each_clip_as_configured():
    torch.manual_seed(0)
    x = torch.randn(8, 50, 40)
    none = dict(time_masks=0, freq_masks=0, gain_db=0, shift=0, freq_shift=0)
    eq = SpectrogramAugment(AudioAugmentConfig(**{**none, "eq_db": 6, "eq_points": 5}))(x) - x
    assert torch.allclose(eq, eq[:, :1].expand_as(eq), atol=1e-5)  # one curve per clip, the same in every frame
    assert eq.abs().max() <= 6 + 1e-5 and eq.std(dim=2).min() > 0.3  # bounded, and not a flat gain
    curve = eq[:, 0]
    assert curve.diff(dim=1).diff(dim=1).abs().gt(1e-4).sum(dim=1).max() <= 2 * 3  # straight between the 5 points
    assert not torch.allclose(curve[0], curve[1])  # each clip draws its own
    gain = SpectrogramAugment(AudioAugmentConfig(**{**none, "gain_db": 3}))(x) - x
    assert torch.allclose(gain, gain[:, :1, :1].expand_as(gain), atol=1e-5) and gain.abs().max() <= 3 + 1e-5
    masked = SpectrogramAugment(AudioAugmentConfig(**{**none, "time_masks": 1, "time_mask": 0.2}))(x)
    changed_frames = (masked != x).any(dim=2).sum(dim=1)
    assert changed_frames.max() <= 10 and changed_frames.sum() > 0
    assert torch.equal(SpectrogramAugment(AudioAugmentConfig(**none))(x), x)

    colours = torch.linspace(-20, 20, 8)[:, None, None] * torch.linspace(0, 1, 40)[None, None, :]
    clips = x + colours  # the same kind of events, each clip coloured differently
    styled = SpectrogramAugment(AudioAugmentConfig(**{**none, "mixstyle": 1.0, "mixstyle_alpha": 2.0}))(clips)

    def standardized(t):
        return (t - t.mean(dim=1, keepdim=True)) / t.std(dim=1, keepdim=True)

    assert torch.allclose(standardized(styled), standardized(clips), atol=1e-3)  # the events are kept
    means, new_means = clips.mean(dim=1), styled.mean(dim=1)
    assert (new_means - means).abs().amax(dim=1).max() > 1  # the colouring changed
    assert (new_means >= means.amin(dim=0) - 1e-3).all() and (new_means <= means.amax(dim=0) + 1e-3).all()  # a blend of the batch's


def test_pitch_shift_moves_harmonics_as_resampling_the_sound_would():
    cfg = AudioInput(type="audio", sample_rate=8000, n_fft=256, hop=64, n_mels=48)
    transform = spectrogram.Spectrogram(cfg)

    def peak_bins(hz_list):
        waves = torch.from_numpy(np.stack([tone_clip(hz, 0.5, 8000) for hz in hz_list]))
        return transform(waves).mean(dim=1).argmax(dim=1)

    low, high = peak_bins([440 * 2 ** (-3 / 12), 440 * 2 ** (3 / 12)])
    torch.manual_seed(0)
    clips = transform(torch.from_numpy(np.stack([tone_clip(440, 0.5, 8000)] * 32)))
    none = dict(time_masks=0, freq_masks=0, gain_db=0, shift=0, freq_shift=0)
    shifted = SpectrogramAugment(AudioAugmentConfig(**{**none, "pitch_shift": 3}), cfg)(clips).mean(dim=1).argmax(dim=1)
    assert shifted.min() >= low and shifted.max() <= high  # never further than 3 semitones
    assert len(shifted.unique()) >= 4  # and spread over the range, both ways
    assert (shifted < peak_bins([440])[0]).any() and (shifted > peak_bins([440])[0]).any()
    with pytest.raises(TrillaError, match="pitch_shift needs spectrograms of sound"):
        SpectrogramAugment(AudioAugmentConfig(pitch_shift=2))


def test_dynamics_reshapes_attacks_and_keeps_each_frames_spectrum():
    cfg = AudioInput(type="audio", sample_rate=8000, n_fft=256, hop=64, n_mels=48)
    wave = tone_clip(330, 1.0, 8000) * np.minimum(1.0, np.arange(8000) / 3200)  # swells in over 0.4 s, like a bowed note
    torch.manual_seed(0)
    clips = spectrogram.Spectrogram(cfg)(torch.from_numpy(np.stack([wave.astype(np.float32)] * 32)))
    none = dict(time_masks=0, freq_masks=0, gain_db=0, shift=0, freq_shift=0)
    moved = SpectrogramAugment(AudioAugmentConfig(**{**none, "dynamics": 0.75}))(clips) - clips
    loudest = moved.gather(2, clips.argmax(dim=2, keepdim=True)).expand_as(moved)
    clear = clips > clips.amin() + 0.75 * 40  # bins that even an expander cannot push to the floor
    assert clear.sum(dim=2).gt(3).float().mean() > 0.5  # several such bins in most frames
    assert torch.allclose(moved[clear], loudest[clear], atol=1e-3)  # a frame moves as a whole: its spectrum keeps its shape
    assert moved.abs().max() <= 0.75 * 40 + 1e-3

    def attack_frames(spec):  # frames until the note is within 6 dB of its loudest
        loudness = spec.amax(dim=2)
        return (loudness < loudness.amax(dim=1, keepdim=True) - 6).int().argmin(dim=1)

    before, after = attack_frames(clips)[0], attack_frames(clips + moved)
    assert (after < before).any() and (after > before).any()  # compressed (quicker attack) and expanded (slower), by clip
    swell = loudest[:, 5, 0]  # how far each clip moved early in the attack: up when compressed, down when expanded
    assert (after[swell > 0] <= before).all() and (after[swell < 0] >= before).all() and (swell != 0).all()


def test_freeze_holds_each_notes_spectrum_after_its_peak_and_keeps_every_frames_loudness():
    sr = 8000
    cfg = AudioInput(type="audio", sample_rate=sr, n_fft=256, hop=64, n_mels=48)
    t = np.arange(sr) / sr
    wave = np.zeros(sr)
    notes = [(0.1, 0.5, 220.0), (0.55, 1.0, 330.0)]  # plucked: upper harmonics die first, so each note's spectrum darkens
    for start, end, f0 in notes:
        age, release = t - start, np.clip((end - t) / 0.03, 0, 1)  # a 30-ms release, not a click
        wave += (t >= start) * release * sum(np.exp(-age * 3 * k) * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9))
    clips = spectrogram.Spectrogram(cfg)(torch.from_numpy(np.stack([wave.astype(np.float32)] * 16)))
    none = dict(time_masks=0, freq_masks=0, gain_db=0, shift=0, freq_shift=0)
    torch.manual_seed(0)
    out = SpectrogramAugment(AudioAugmentConfig(**none, freeze=1.0))(clips)

    def loudness(spec):
        return 10 * torch.log10((10 ** (spec.double() / 10)).sum(dim=2))

    def centred(spec):  # each frame's spectral shape, whatever its level
        return spec - spec.mean(dim=2, keepdim=True)

    assert torch.allclose(loudness(out), loudness(clips), atol=1e-3)
    hops = sr / cfg.hop
    kept = []
    for start, end, _ in notes:
        first, last = int(start * hops) + 1, int(end * hops) - 2  # frames wholly inside the note
        peak = first - 1 + int(loudness(clips[:1])[0, first - 1:last].argmax())
        attack = slice(int(start * hops) - 3, peak + 1)
        assert torch.allclose(out[:, attack], clips[:, attack], atol=1e-3)
        sustain = slice(peak + 3, last)
        before = (centred(clips[:, sustain]) - centred(clips[:, peak:peak + 1])).norm(dim=2)
        after = (centred(out[:, sustain]) - centred(clips[:, peak:peak + 1])).norm(dim=2)
        assert before.min() > 1.0  # the note's spectrum did change after its peak
        kept.append(after / before)  # the share of that change each clip keeps: 1 - its amount, in every frame
    for share in kept:
        assert torch.allclose(share, share[:, :1].expand_as(share), atol=1e-3)
    assert torch.allclose(kept[0][:, 0], kept[1][:, 0], atol=1e-3)  # the second note is held at its own peak, by the same amount
    assert kept[0][:, 0].max() < 1 and kept[0][:, 0].min() < 0.3 and kept[0][:, 0].max() > 0.7  # amounts drawn across [0, 1]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # the step runs without a Trainer here
def test_mixup_trains_on_blended_clips_against_blended_targets():
    from trilla.config import TrainConfig
    from trilla.tasks import ClassificationTask, _mix

    batch = {"spectrogram": torch.arange(3.0)[:, None, None].expand(3, 4, 2), "lengths": torch.tensor([4, 2, 3]), "target": torch.tensor([0, 1, 1])}
    mixed = _mix(batch, torch.tensor([2, 0, 1]), 0.75, ("spectrogram",))
    assert torch.allclose(mixed["spectrogram"][:, 0, 0], torch.tensor([0.5, 0.75, 1.75]))
    assert mixed["lengths"].tolist() == [4, 4, 3] and mixed["target"] is batch["target"]

    task = ClassificationTask({"name": "rnn", "units": [4]}, {"kind": "audio", "bins": 2, "frames": None}, ["a", "b"],
                              [0.0, 0.0], [1.0, 1.0], TrainConfig(mixup=1.0).model_dump())
    targets = torch.tensor([0, 1] * 4)
    confident = torch.nn.functional.one_hot(targets, 2).float() * 10  # right about every clip's own label
    seen = []
    task.logits = lambda b: seen.append(b) or confident
    torch.manual_seed(0)
    loss = task.training_step({"spectrogram": torch.arange(8.0)[:, None, None].expand(8, 4, 2), "target": targets}, 0)["loss"]
    assert not torch.equal(seen[0]["spectrogram"][:, 0, 0], torch.arange(8.0))  # the model saw blends, not the clips
    assert loss > 10 * torch.nn.functional.cross_entropy(confident, targets)  # and was also scored on the partners' labels


def test_flatten_needs_fixed_length_and_image_models_refuse_audio(tmp_path):
    data = make_tone_folder(tmp_path / "tones", {"low": 6, "high": 6})
    with pytest.raises(TrillaError, match="global_pool: flatten needs clips of one length"):
        train(_config(tmp_path, data, "model={name: spectro_cnn}"))
    with pytest.raises(TrillaError, match="models for audio: panns_cnn, rnn, spectro_cnn"):
        train(_config(tmp_path, data, "model={name: small_cnn}"))
    with pytest.raises(TrillaError, match="belong to input: {type: audio}, not image") as raised:
        load_config(overrides=["augment={time_masks: 1}"])
    assert str(raised.value).splitlines()[1:] == ["  augment: these keys belong to input: {type: audio}, not image"]  # not the whole config after it


@pytest.mark.parametrize("mode", ["quadrants", "binary", "regression"])
def test_affect_targets(tmp_path, mode):
    manifest = make_affect_manifest(tmp_path / "emo", n=120)
    extra = ["data.targets={valence: valence, arousal: arousal}", f"data.target_mode={mode}", "train.epochs=25",
             "model={name: rnn, units: [16]}", "train.lr=0.01", "input.seconds=0.5", "augment=null"]
    if mode == "binary":
        extra.append("data.axis=arousal")
    run = train(_config(tmp_path, manifest, *extra))
    metrics = run.metrics
    if mode == "binary":
        assert run.classes == ["low arousal", "high arousal"] and "test/valence_accuracy" not in metrics
        assert metrics["test/arousal_accuracy"] == metrics["test/accuracy"] >= 0.85
    else:
        assert metrics["test/valence_accuracy"] >= 0.85 and metrics["test/arousal_accuracy"] >= 0.85, metrics
    if mode == "regression":
        assert run.classes == ["valence", "arousal"]
        assert metrics["test/pearson_valence"] > 0.5 and {"test/r2_arousal", "test/rmse_arousal"} <= set(metrics)
        record = run.predict([tmp_path / "emo" / "clips" / "000.wav"])[0]
        assert set(record["values"]) == {"valence", "arousal"}
        predictions = pd.read_csv(run.path / "predictions.csv")
        assert {"valence", "predicted_valence", "label", "predicted"} <= set(predictions)
    assert (run.path / "affect_plane.png").is_file() and (run.path / "train" / "affect_plane.png").is_file()
    assert "## Affect" in run.report.read_text()


def test_affect_targets_are_checked(tmp_path):
    manifest = make_affect_manifest(tmp_path / "emo", n=12)
    frame = pd.read_csv(manifest).astype({"arousal": object})
    frame.loc[0, "valence"], frame.loc[1, "arousal"] = 1.5, "loud"
    frame.to_csv(manifest, index=False)
    from trilla.data.datamodule import load_data

    config = _config(tmp_path, manifest, "data.targets={valence: valence, arousal: arousal}")
    data = load_data(manifest, config, progress=False)
    assert len(data.targets) == 10
    assert sorted(p.reason.split(":")[0] for p in data.problems) == ["affect target not a number in [-1, 1]"] * 2
    with pytest.raises(TrillaError, match="quadrants needs both targets"):
        load_config(overrides=["data.targets={arousal: arousal}"])
    with pytest.raises(TrillaError, match="set data.axis"):
        load_config(overrides=["data.targets={arousal: a, valence: v}", "data.target_mode=binary"])


def test_music_emotion_recipe_is_the_study_setting():
    from pathlib import Path

    config = load_config(Path(__file__).parent.parent / "examples" / "music_emotion.yaml")
    cfg = config.input
    assert (cfg.features, cfg.sample_rate, cfg.bins(), cfg.frames(44100 * 10)) == ("spectrogram", 44100, 129, 1722)
    assert config.model.summary(2) == "GRU_l1_o2_d0.8" and config.train.optimizer == "rmsprop"
    assert config.data.trained_axes() == ["arousal"] and (config.train.batch_size, config.train.epochs) == (32, 50)
    instruments = load_config(Path(__file__).parent.parent / "examples" / "instruments.yaml")
    assert instruments.model.name == "panns_cnn" and (instruments.augment.pitch_shift, instruments.augment.eq_db, instruments.augment.freeze) == (3, 6, 1)
    assert (instruments.train.schedule, instruments.train.ema) == ("constant", 0.999)


def test_a_folder_of_sound_files_trains_as_audio_and_says_so(tmp_path, caplog):
    data = make_tone_folder(tmp_path / "tones", {"low": 6, "high": 6})
    with caplog.at_level("INFO", logger="trilla"):
        config = load_config(data=data, overrides=["train.epochs=1"])
    assert config.input.type == "audio" and config.model.name == "panns_cnn"
    assert isinstance(config.augment, AudioAugmentConfig)
    assert "input type audio" in caplog.text and "12 of 12 files are sound files" in caplog.text
    named = load_config(data=data, overrides=["input={type: image}"])
    assert named.input.type == "image", "a kind the config names is never replaced"


def test_audio_defaults_plan_a_step_budget_unless_the_config_sets_epochs_or_min_steps(tmp_path):
    data = make_tone_folder(tmp_path / "tones", {"low": 6, "high": 6})
    assert load_config(data=data).train.min_steps == AudioKind.default_min_steps == 3840
    assert load_config(data=data, overrides=["train.batch_size=8"]).train.min_steps == 3840, "another train key is no epochs count"
    assert load_config(data=data, overrides=["train.epochs=2"]).train.min_steps is None, "an explicit epochs count is kept as given"
    assert load_config(data=data, overrides=["train.min_steps=100"]).train.min_steps == 100
    assert load_config(data=data, overrides=["train.min_steps=null"]).train.min_steps is None
    assert load_config(data=data, overrides=["input={type: image}"]).train.min_steps is None, "only audio has the budget"


def test_a_very_long_file_among_short_clips_is_named_not_padded_to(tmp_path):
    data = make_tone_folder(tmp_path / "tones", {"low": 4, "high": 4})
    sf.write(data / "low" / "concert.wav", np.tile(tone_clip(300.0, 1.0, 8000), 600), 8000)  # 10 minutes among 0.5-s clips
    paths = sorted(data.rglob("*.wav"))
    packed = store_mod.open_or_build(paths, AudioCodec(8000), tmp_path / "c", progress=False)
    assert packed.array.shape == (9, 4000)  # padded to the longest of the others, not to 10 minutes
    [problem] = packed.problems
    assert problem.path.endswith("concert.wav")
    assert "600 s long, while half of the clips are under 0.5 s" in problem.reason and "set input.seconds" in problem.reason


@pytest.mark.parametrize("suffix", [".wav", ".m4a"])  # libsndfile's blocks, FFmpeg's frames
def test_decoding_only_the_start_gives_the_same_samples_as_decoding_all(tmp_path, suffix):
    import av

    sr = 44100
    x = tone_clip(440.0, 6.0, sr, rate=0.5)
    path = tmp_path / f"long{suffix}"
    if suffix == ".wav":
        sf.write(path, np.stack([x, x[::-1]], 1), sr)
    else:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=sr)
            frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
            frame.sample_rate = sr
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    whole = audio.load(path, 16000)
    start = audio.load(path, 16000, max_samples=32000)
    assert len(start) == 32000 and len(whole) > 90000
    np.testing.assert_array_equal(start, whole[:32000])


def test_a_sound_longer_than_the_model_s_clips_is_read_in_windows_not_cut(tmp_path):
    data = make_tone_folder(tmp_path / "tones", {"low": 16, "high": 16})
    run = train(_config(tmp_path, data, "train.epochs=3", "input.seconds=0.5", "model={name: panns_cnn, channels: [8, 16], embedding: 16}"))
    low, high = tone_clip(300.0, 2.0, 8000, seed=1), tone_clip(2000.0, 2.0, 8000, seed=2)
    sf.write(tmp_path / "long.wav", np.concatenate([low, high]), 8000)  # 4 s: two of low, then two of high
    sf.write(tmp_path / "start.wav", low[:4000], 8000)  # the long file's first half second alone
    [long], [start] = run.predict([tmp_path / "long.wav"], windows=True), run.predict([tmp_path / "start.wav"], windows=True)
    assert "windows" not in start and "windows_read" not in start  # one clip's length: one window, as before
    assert long["windows_read"] == 15 and len(long["windows"]) == 15  # every 0.25 s (half a clip) from 0 to 3.5 s
    assert [w["start"] for w in long["windows"][:3]] == [0.0, 0.25, 0.5] and long["windows"][-1]["end"] == 4.0
    first = {p["label"]: p["probability"] for p in long["windows"][0]["predictions"]}
    assert first == pytest.approx({p["label"]: p["probability"] for p in start["predictions"]}, abs=1e-5)
    mean = {c: np.mean([{p["label"]: p["probability"] for p in w["predictions"]}[c] for w in long["windows"]]) for c in ("low", "high")}
    assert {p["label"]: p["probability"] for p in long["predictions"]} == pytest.approx(mean, abs=1e-5)
    from trilla.predict import Ensemble

    predictor = run.predictor()
    alone, pair = predictor.window_outputs([tmp_path / "long.wav"])[0][0], Ensemble([predictor, predictor]).window_outputs([tmp_path / "long.wav"])[0][0]
    np.testing.assert_allclose(pair, alone, atol=1e-6)  # an ensemble reads the same windows and averages them
    [coarse] = run.predict([tmp_path / "long.wav"], hop=1.0)
    assert coarse["windows_read"] == 5 and "windows" not in coarse  # at 0, 1, 2 and 3 s, and one ending with the sound (3.5 s)


def test_short_clips_under_a_long_window_are_said_and_a_sequence_model_never_reads_their_padding(tmp_path, caplog):
    import torch

    data = make_tone_folder(tmp_path / "tones", {"low": 12, "high": 12}, seconds=(0.4, 0.6))
    with caplog.at_level("WARNING", logger="trilla"):
        run = train(_config(tmp_path, data, "input.seconds=2", "train.epochs=1", "model={name: rnn, units: [8]}"))
    said = [r.getMessage() for r in caplog.records if "shorter than input.seconds" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("24 of 24 clips are shorter than input.seconds 2 (median 0.") and "input.seconds: 0." in said[0]
    assert run.info["data"]["input"]["masked"] is True and run.info["data"]["input"]["frames"] is not None

    clip = tmp_path / "one.wav"
    sf.write(clip, tone_clip(2000.0, 0.5, 8000), 8000)
    predictor = run.predictor()
    prepared = predictor.preprocessor.prepare(clip)
    frames = int(prepared["lengths"][0])
    assert frames < prepared["spectrogram"].shape[1]  # the window is mostly padding
    model = predictor.task.eval()
    batch = {key: torch.as_tensor(value) for key, value in prepared.items()}
    with torch.no_grad():
        whole = model.logits({"spectrogram": batch["spectrogram"], "lengths": batch["lengths"]})
        sound_only = model.logits({"spectrogram": batch["spectrogram"][:, :frames], "lengths": batch["lengths"]})
        unmasked = model.logits({"spectrogram": batch["spectrogram"]})
    torch.testing.assert_close(whole, sound_only)  # the padding after the sound never reaches the state
    assert not torch.allclose(whole, unmasked)  # and without the lengths it would
