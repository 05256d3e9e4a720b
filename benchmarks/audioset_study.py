"""The AudioSet study's table (issue 5, items 6 and 7), on AudioSet itself or on a scene set made here.

`table` trains examples/audioset.yaml as the study's models (MLP with 1, 2 and 3 layers of 1500, CNN,
LSTM, the bipolar MLP, the MLP with PANNs' balanced sampling) and the attention models, on any packed
HDF5 training file, and evaluates each on the eval file: macro mAP, mean AUC, d', and the study's own
two numbers (its "mAP" is a per-clip Jaccard index, its pSR a recall), labelled as such.

`scenes` makes an AudioSet-format set from real instrument sounds (make_audio.py's renders of eight
families from the FluidR3 sound font): 10-s scenes in which each of one to three families sounds during
a few of the seconds, over quiet noise, labelled per clip only (weak labels, as AudioSet's). Each second
becomes a 128-d embedding: a 128-band log-mel spectrum averaged over the second, standardized per band
with the training scenes' statistics and quantized to uint8 around 128, as AudioSet's VGGish embeddings
are quantized. One scene in five is 6 to 9 s long, so padding and masks are exercised. Sources of the
eval scenes are renders never used in training scenes.

    .venv/bin/python benchmarks/audioset_study.py scenes --renders WORK/fluid --out WORK/scenes
    .venv/bin/python benchmarks/audioset_study.py table --data WORK/scenes [--models mlp1,attention_feature]

(`--renders` is the output of `make_audio.py instruments fluid --n 300 --seed 0 --soundfont
/usr/share/sounds/sf2/FluidR3_GM.sf2`.) Writes benchmarks/results/audioset_<name of the data folder>.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

import trilla
from trilla.config import AudioInput
from trilla.kinds.audio import decode as audio
from trilla.kinds.audio.spectrogram import Spectrogram

EXAMPLES = Path(__file__).parent.parent / "examples"
RESULTS = Path(__file__).parent / "results"
RATE = 16000

MODELS = {
    "mlp1": ("MLP 1 x 1500", []),
    "mlp2": ("MLP 2 x 1500", ["model.layers=2"]),
    "mlp3": ("MLP 3 x 1500", ["model.layers=3"]),
    "cnn": ("CNN 16 x 3x1, dense 600", ["model={name: emb_cnn}"]),
    "lstm": ("LSTM 600, dense 600", ["model={name: emb_lstm}"]),
    "bipolar": ("bipolar MLP 1 x 1500 (tanh, MSE)", ["train.multilabel_loss=bipolar"]),
    "mlp1_balanced": ("MLP 1 x 1500, balanced sampling", ["train.imbalance=balanced_sampler"]),
    "attention_decision": ("decision-level attention", ["model={name: attention, level: decision}"]),
    "attention_feature": ("feature-level attention", ["model={name: attention, level: feature}"]),
}


def make_scenes(renders: Path, out: Path, n_train: int, n_eval: int, seed: int) -> None:
    manifest = pd.read_csv(renders / "manifest.csv")
    families = sorted(manifest["label"].unique())
    rng = np.random.default_rng(seed)
    held_out = rng.random(len(manifest)) < 0.25
    print(f"{len(manifest)} renders of {len(families)} families; decoding")
    waves = [audio.load(renders / p, RATE) for p in manifest["path"]]
    embed = Spectrogram(AudioInput(type="audio", features="logmel", sample_rate=RATE, n_fft=1024, hop=160, n_mels=128))
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"index": range(len(families)), "mid": [f"/trilla/{f}" for f in families], "display_name": families}).to_csv(
        out / "class_labels_indices.csv", index=False
    )
    stats = None
    for name, count, pool in (("train", n_train, ~held_out), ("eval", n_eval, held_out)):
        by_family = {f: np.flatnonzero(pool & (manifest["label"] == f).to_numpy()) for f in families}
        seconds, labels, lengths = [], np.zeros((count, len(families)), dtype=bool), np.full(count, 10)
        for i in range(count):
            scene = 0.003 * rng.standard_normal(10 * RATE).astype(np.float32)
            for f in rng.choice(len(families), size=rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]), replace=False):
                labels[i, f] = True
                span = int(rng.integers(2, 6))
                start = int(rng.integers(0, 10 - span + 1))
                source = waves[rng.choice(by_family[families[f]])]
                sound = np.resize(source, span * RATE) * float(10 ** (rng.uniform(-6, 0) / 20))
                scene[start * RATE : (start + span) * RATE] += sound
            if rng.random() < 0.2:
                lengths[i] = int(rng.integers(6, 10))
            seconds.append(scene.reshape(10, RATE))
        with torch.inference_mode():
            mels = torch.cat([embed(torch.from_numpy(np.concatenate(seconds[s : s + 200]))).mean(1) for s in range(0, count, 200)])
        mels = mels.numpy().reshape(count, 10, 128)
        if stats is None:
            real = mels[np.arange(10)[None, :] < lengths[:, None]]
            stats = real.mean(0), real.std(0) + 1e-6
        x = np.clip(np.round((mels - stats[0]) / stats[1] / 3 * 128 + 128), 0, 255).astype(np.uint8)
        x[np.arange(10)[None, :] >= lengths[:, None]] = 128
        with h5py.File(out / f"{name}.h5", "w") as f:
            f["x"], f["y"] = x, labels
            f["video_id_list"] = np.asarray([f"{name}{i:06d}".encode() for i in range(count)])
        print(f"{out / f'{name}.h5'}: {count} scenes, label frequency {labels.mean(0).round(2).tolist()}")


def table(data: Path, models: list[str], epochs: int | None) -> None:
    rows = []
    for key in models:
        title, overrides = MODELS[key]
        config = trilla.load_config(EXAMPLES / "audioset.yaml", [
            f"data.path={data / 'train.h5'}", f"data.test_path={data / 'eval.h5'}", f"data.class_list={data / 'class_labels_indices.csv'}",
            f"run.dir={data / 'runs'}", f"run.name={key}", "train.progress=false", *([f"train.epochs={epochs}"] if epochs else []), *overrides,
        ])
        began = time.perf_counter()
        run = trilla.train(config)
        m = run.metrics
        rows.append({
            "model": title, "macro mAP": m["test/mAP"], "mean AUC": m["test/mean_auc"], "d'": m["test/d_prime"],
            "study 'mAP' (Jaccard)": m["test/study_jaccard"], "study pSR (recall)": m["test/study_psr"],
            "best epoch": m["best_epoch"], "minutes": (time.perf_counter() - began) / 60, "run": run.path.name,
        })
        print(rows[-1])
    frame = pd.DataFrame(rows)
    with h5py.File(data / "train.h5", "r") as f, h5py.File(data / "eval.h5", "r") as g:
        sizes = f"{f['y'].shape[0]} training clips (10% carved for validation), {g['y'].shape[0]} eval clips, {f['y'].shape[1]} classes"
    lines = [
        f"# AudioSet study table: {data.name}",
        "",
        f"Command: `.venv/bin/python benchmarks/audioset_study.py table --data {data.name}`; data: {sizes}.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__} ({torch.get_num_threads()} threads).",
        "",
        "Every model is examples/audioset.yaml (Adam lr 0.001, batch 128, early stopping on validation macro mAP with",
        "patience 3, best checkpoint) with the model swapped. Macro mAP is the mean over classes of average precision;",
        "the study's 'mAP' is a per-clip Jaccard index of the predictions rounded at 0.5, its pSR a recall.",
        "",
        "| " + " | ".join(frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
        *("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)),
        "",
    ]
    if "mlp1" in models:
        best = frame.loc[frame["macro mAP"].idxmax()]
        flat = frame.loc[frame["model"] == MODELS["mlp1"][0], "macro mAP"].iloc[0]
        lines += [f"Best: {best['model']}, macro mAP {best['macro mAP']:.3f}, {best['macro mAP'] - flat:+.3f} over the study's flat MLP ({flat:.3f}).", ""]
    out = RESULTS / f"audioset_{data.name}.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    scenes = sub.add_parser("scenes", help="make the weakly labelled instrument scenes")
    scenes.add_argument("--renders", type=Path, required=True, help="make_audio.py instruments output (manifest.csv)")
    scenes.add_argument("--out", type=Path, required=True)
    scenes.add_argument("--train", type=int, default=3000)
    scenes.add_argument("--eval", type=int, default=1000)
    scenes.add_argument("--seed", type=int, default=0)
    study = sub.add_parser("table", help="train and evaluate the study's models")
    study.add_argument("--data", type=Path, required=True, help="folder with train.h5, eval.h5, class_labels_indices.csv")
    study.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    study.add_argument("--epochs", type=int, help="cap on epochs (default: the recipe's 50, with early stopping)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.command == "scenes":
        make_scenes(args.renders, args.out, args.train, args.eval, args.seed)
    else:
        table(args.data, args.models.split(","), args.epochs)


if __name__ == "__main__":
    main()
