"""AudioSet's embedding formats (TFRecord SequenceExample, packed HDF5, class list), read without TensorFlow."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import trilla
from trilla.config import load_config
from trilla.errors import TrillaError
from trilla.kinds.embeddings import audioset


def write_tfrecord(path, clips):
    """clips: (video_id, start, labels, (T, 128) uint8) as AudioSet's release writes them."""
    from tfrecord.writer import TFRecordWriter

    writer = TFRecordWriter(str(path))
    for video_id, start, labels, embedding in clips:
        context = {"video_id": (video_id.encode(), "byte"), "start_time_seconds": (float(start), "float"),
                   "end_time_seconds": (float(start + 10), "float"), "labels": (list(labels), "int")}
        writer.write(context, {"audio_embedding": ([row.tobytes() for row in embedding], "byte")})
    writer.close()
    return path


def test_tfrecord_shards_pad_short_clips_and_scale_values(tmp_path):
    rng = np.random.default_rng(0)
    full, short = (rng.integers(0, 256, (t, 128), dtype=np.uint8) for t in (10, 7))
    first = write_tfrecord(tmp_path / "a.tfrecord", [("--PJHxphWEs", 30, [0, 137], full)])
    second = write_tfrecord(tmp_path / "b.tfrecord", [("-0RWZT-miFs", 420, [526], short), ("-1pRmoJIGQc", 0, [], full)])
    clips = audioset.read_tfrecords([first, second], classes=527)
    assert clips.video_ids.tolist() == ["--PJHxphWEs", "-0RWZT-miFs", "-1pRmoJIGQc"]
    assert clips.frames.tolist() == [10, 7, 10]
    assert clips.mask()[1].tolist() == [True] * 7 + [False] * 3
    assert np.flatnonzero(clips.labels[0]).tolist() == [0, 137] and np.flatnonzero(clips.labels[1]).tolist() == [526]
    assert not clips.labels[2].any() and clips.labels.shape == (3, 527)
    values = clips.values()
    assert np.allclose(values[1, :7], (short.astype(np.float32) - 128) / 128) and (values[1, 7:] == 0).all()
    assert values.dtype == np.float32 and values.min() >= -1 and values.max() < 1
    raw = list(audioset.iter_tfrecord(first))[0]
    assert raw["start"] == 30 and raw["end"] == 40 and np.array_equal(raw["embedding"], full)


def test_bad_tfrecords_and_labels_are_reported(tmp_path):
    good = write_tfrecord(tmp_path / "a.tfrecord", [("x", 0, [3], np.zeros((10, 128), np.uint8))])
    with pytest.raises(TrillaError, match="a label outside 0..2"):
        audioset.read_tfrecords([good], classes=3)
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(TrillaError, match="cut.tfrecord: not a readable AudioSet TFRecord"):
        audioset.read_tfrecords([cut], classes=527)


def test_packed_hdf5_reads_only_the_rows_asked_for(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 10, 128), dtype=np.uint8)
    y = rng.random((50, 527)) < 0.01
    path = tmp_path / "bal_train.h5"
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = x, y
        f["video_id_list"] = np.asarray([f"vid{i:03d}".encode() for i in range(50)])
    part = audioset.read_hdf5(path, 20, 30)
    assert len(part) == 10 and part.video_ids[0] == "vid020"
    assert np.array_equal(part.embeddings, x[20:30]) and np.array_equal(part.labels, y[20:30])
    assert part.mask().all()
    assert len(audioset.read_hdf5(path, 40)) == 10
    broken = tmp_path / "other.h5"
    with h5py.File(broken, "w") as f:
        f["x"] = x
    with pytest.raises(TrillaError, match="lacks video_id_list, y"):
        audioset.read_hdf5(broken)


def test_the_same_clips_read_the_same_from_tfrecord_shards_and_the_packed_file(tmp_path):
    from trilla.data.datamodule import StoreDataModule
    from trilla.kinds.embeddings.data import load_embeddings
    from trilla.kinds.embeddings.stream import HDF5Stream

    rng = np.random.default_rng(2)
    lengths = [10, 3, 7, 10, 1, 9, 10, 5]
    clips = [(f"vid{i:03d}", 10 * i, sorted(rng.choice(6, size=rng.integers(0, 3), replace=False).tolist()),
              rng.integers(1, 255, (t, 128), dtype=np.uint8)) for i, t in enumerate(lengths)]
    (tmp_path / "shards").mkdir()
    write_tfrecord(tmp_path / "shards" / "eval_00.tfrecord", clips[:5])
    write_tfrecord(tmp_path / "shards" / "eval_01.tfrecord", clips[5:])
    x = np.zeros((len(clips), 10, 128), dtype=np.uint8)  # packed as PANNs packs it: short clips padded with zeros, no lengths
    y = np.zeros((len(clips), 6), dtype=bool)
    for i, (_, _, labels, embedding) in enumerate(clips):
        x[i, : len(embedding)] = embedding
        y[i, labels] = True
    with h5py.File(tmp_path / "eval.h5", "w") as f:
        f["x"], f["y"] = x, y
        f["video_id_list"] = np.asarray([c[0].encode() for c in clips])

    shards = audioset.read_tfrecords(sorted((tmp_path / "shards").glob("*.tfrecord")), classes=6)
    packed = audioset.read_hdf5(tmp_path / "eval.h5")
    assert packed.frames.tolist() == lengths == shards.frames.tolist()
    for name in ("video_ids", "embeddings", "frames", "labels"):
        np.testing.assert_array_equal(getattr(packed, name), getattr(shards, name), err_msg=name)
    np.testing.assert_array_equal(packed.values(), shards.values())
    np.testing.assert_array_equal(packed.mask(), shards.mask())

    config = load_config(None, ["input={type: embeddings, stream: false}", "train.progress=false"])
    from_shards = load_embeddings(tmp_path / "shards", config.data, config.input, classes=[str(i) for i in range(6)])
    from_file = load_embeddings(tmp_path / "eval.h5", config.data, config.input, classes=[str(i) for i in range(6)])
    everything = np.arange(len(clips))
    for key, value in from_file.inputs(everything).items():
        np.testing.assert_array_equal(value, from_shards.inputs(everything)[key], err_msg=key)
    assert from_file.fingerprint == from_shards.fingerprint
    streamed = next(iter(HDF5Stream(tmp_path / "eval.h5", everything, batch_size=8, chunk=8, buffer=8, seed=0)))
    order = np.argsort([np.flatnonzero((packed.values() == e.numpy()).all(axis=(1, 2)))[0] for e in streamed["embeddings"]])
    np.testing.assert_array_equal(streamed["lengths"].numpy()[order], lengths)

    grouped = load_config(None, ["input={type: embeddings, stream: false}", "data.split.group_column=speaker"], data=tmp_path / "eval.h5")
    with pytest.raises(TrillaError, match="group_column needs files listed in a CSV manifest"):
        StoreDataModule(grouped, progress=False).prepare()


def test_class_list(tmp_path):
    path = tmp_path / "class_labels_indices.csv"
    path.write_text('index,mid,display_name\n1,/m/0ytgt,"Child speech, kid speaking"\n0,/m/09x0r,"Speech"\n')
    table = audioset.read_class_labels(path)
    assert table.loc[1, "display_name"] == "Child speech, kid speaking" and table.loc[0, "mid"] == "/m/09x0r"
    pd.DataFrame({"index": [0, 2], "mid": ["a", "b"], "display_name": ["A", "B"]}).to_csv(path, index=False)
    with pytest.raises(TrillaError, match="without gaps"):
        audioset.read_class_labels(path)
    pd.DataFrame({"index": [0], "name": ["A"]}).to_csv(path, index=False)
    with pytest.raises(TrillaError, match="lacks the column"):
        audioset.read_class_labels(path)


def _average_precision(truth, scores):
    """Textbook AP for distinct scores: the precision at the rank of each positive, averaged."""
    order = np.argsort(-scores)
    hits = truth[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return precision[hits].mean()


def _auc(truth, scores):
    """The probability that a random positive outscores a random negative (Mann-Whitney)."""
    pos, neg = scores[truth], scores[~truth]
    return (pos[:, None] > neg[None, :]).mean()


def test_multilabel_metrics_agree_with_plain_numpy():
    from scipy.stats import norm

    from trilla.metrics import multilabel_metrics, per_class_ranking

    rng = np.random.default_rng(3)
    targets = rng.random((200, 6)) < [0.5, 0.2, 0.05, 0.3, 0.1, 0.0]  # the last class has no positives
    probs = np.clip(targets * 0.3 + rng.random((200, 6)) * 0.7, 0, 1)  # distinct scores, informative
    m = multilabel_metrics(targets, probs)
    aps = [_average_precision(targets[:, c], probs[:, c]) for c in range(5)]
    aucs = [_auc(targets[:, c], probs[:, c]) for c in range(5)]
    assert abs(m["test/mAP"] - np.mean(aps)) < 1e-6 and m["test/classes_without_positives"] == 1
    assert abs(m["test/mean_auc"] - np.mean(aucs)) < 1e-6
    assert abs(m["test/d_prime"] - np.sqrt(2) * norm.ppf(np.mean(aucs))) < 1e-6
    predicted = probs >= 0.5
    inter, union = (predicted & targets).sum(1), (predicted | targets).sum(1)
    jaccard = [i / u if u else 1.0 for i, u in zip(inter, union)]
    assert abs(m["test/study_jaccard"] - np.mean(jaccard)) < 1e-6
    assert abs(m["test/study_psr"] - inter.sum() / targets.sum()) < 1e-6
    assert m["test/mAP"] != m["test/study_jaccard"]  # the study's "mAP" is another number
    table = per_class_ranking(targets, probs, list("abcdef"))
    assert table["class"].tolist() == list("abcdef") and np.isnan(table.loc[5, "average_precision"])
    assert table["positives"].tolist() == targets.sum(0).tolist()


EMBEDDING_MODELS = {
    "mlp": {"name": "mlp", "layers": 2, "units": 64},
    "emb_cnn": {"name": "emb_cnn", "dense": 64},
    "emb_lstm": {"name": "emb_lstm", "units": 32, "dense": 32},
    "decision": {"name": "attention", "level": "decision", "hidden": [64]},
    "feature": {"name": "attention", "level": "feature", "hidden": [64]},
}


def weak_scenes(n: int, classes: int = 4, seed: int = 0):
    """Clips of 10 seconds whose labels say which class patterns sound in some of the seconds."""
    patterns = np.random.default_rng(99).standard_normal((classes, 128)).astype(np.float32)  # the same sounds in every set
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, 10, 128)).astype(np.float32)
    y = rng.random((n, classes)) < 0.35
    for i, c in zip(*np.nonzero(y)):
        seconds = rng.choice(10, size=int(rng.integers(2, 6)), replace=False)
        x[i, seconds] += patterns[c]
    lengths = rng.integers(6, 11, n)
    for i, length in enumerate(lengths):
        x[i, length:] = 0.0
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)), torch.from_numpy(lengths)


@pytest.mark.parametrize("model", list(EMBEDDING_MODELS))
def test_embedding_models_learn_weak_labels_and_ignore_padding(model):
    from trilla.metrics import multilabel_metrics
    from trilla.models import InputSpec, build, params_class

    torch.manual_seed(0)
    params = params_class(EMBEDDING_MODELS[model]["name"]).model_validate(EMBEDDING_MODELS[model])
    net = build(params, InputSpec(kind="embeddings", bins=128, frames=10), 4)
    x, y, lengths = weak_scenes(256)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(8):
        for start in range(0, 256, 32):
            part = slice(start, start + 32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[part], None, lengths[part]), y[part])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    tx, ty, tlengths = weak_scenes(128, seed=1)
    with torch.no_grad():
        probs = torch.sigmoid(net(tx, None, tlengths)).numpy()
        if model in ("emb_lstm", "decision", "feature"):  # what lies past a clip's end changes nothing
            noisy = tx.clone()
            noisy[torch.arange(10)[None, :] >= tlengths[:, None]] = 5.0
            assert np.allclose(torch.sigmoid(net(noisy, None, tlengths)).numpy(), probs, atol=1e-5)
    assert multilabel_metrics(ty.numpy() > 0.5, probs)["test/mAP"] >= 0.9


def write_hdf5(path, n, classes=4, seed=0, frequencies=(0.9, 0.3, 0.1, 0.02)):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["x"] = rng.integers(0, 256, (n, 10, 128), dtype=np.uint8)
        f["y"] = rng.random((n, classes)) < np.asarray(frequencies)
        f["video_id_list"] = np.asarray([f"vid{i:06d}".encode() for i in range(n)])
    return path


def _ids(batch_embeddings, path):
    """Recover row numbers from the values: each row's first byte pattern is unique enough with its neighbours."""
    with h5py.File(path, "r") as f:
        x = (f["x"][:, 0, :8].astype(np.float32) - 128) / 128
    lookup = {row.tobytes(): i for i, row in enumerate(x)}
    return [lookup[e[0, :8].numpy().tobytes()] for e in batch_embeddings]


def test_stream_visits_each_training_row_once_per_epoch_in_a_new_order(tmp_path):
    from trilla.kinds.embeddings.stream import HDF5Stream

    path = write_hdf5(tmp_path / "train.h5", 1000)
    train_rows = np.arange(1000)[np.arange(1000) % 5 != 0]  # a fifth carved out for validation
    stream = HDF5Stream(path, train_rows, batch_size=64, chunk=100, buffer=300, seed=0)
    epochs = []
    for _ in range(2):
        batches = list(stream)
        assert len(batches) == len(stream) == 13 and all(len(b["target"]) == 64 for b in batches[:-1])
        seen = [row for b in batches for row in _ids(b["embeddings"], path)]
        assert sorted(seen) == train_rows.tolist()  # every training row once, no validation row
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] != sorted(epochs[0])
    first = batches[0]
    assert first["embeddings"].shape[1:] == (10, 128) and first["target"].shape[1] == 4 and (first["lengths"] == 10).all()


def test_stream_memory_stays_bounded_by_the_buffer(tmp_path):
    import tracemalloc

    from trilla.kinds.embeddings.stream import HDF5Stream

    path = write_hdf5(tmp_path / "big.h5", 40000)  # 51 MB of embeddings
    stream = HDF5Stream(path, batch_size=128, chunk=1024, buffer=2048)
    tracemalloc.start()
    count = sum(len(b["target"]) for b in stream)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 40000 and peak < 12e6, peak  # the buffer and a chunk, as float batches: far below the file


def test_balanced_stream_shows_rare_classes_as_often_as_common_ones(tmp_path):
    from trilla.kinds.embeddings.stream import HDF5Stream

    path = write_hdf5(tmp_path / "unbalanced.h5", 3000)
    plain = np.concatenate([b["target"].numpy() for b in HDF5Stream(path, batch_size=128)]).mean(0)
    balanced = np.concatenate([b["target"].numpy() for b in HDF5Stream(path, batch_size=128, balanced=True)]).mean(0)
    assert plain[3] < 0.05 and balanced[3] > 0.2  # the 2% class now fills about a quarter of each batch
    assert balanced[2] > 2 * plain[2]


def test_one_registry_reads_every_source_and_a_packed_one_names_its_input_type(tmp_path):
    from conftest import make_image_folder
    from trilla.data.sources import find_source, read_source
    from trilla.kinds import infer_kind

    clip = np.full((10, 128), 128, np.uint8)
    shards = tmp_path / "shards"
    shards.mkdir()
    write_tfrecord(shards / "a.tfrecord", [("--PJHxphWEs", 30, [0], clip)])
    with h5py.File(tmp_path / "eval.h5", "w") as f:
        f["x"], f["y"], f["video_id_list"] = clip[None], np.ones((1, 2), bool), np.array([b"--PJHxphWEs"])
    pictures = make_image_folder(tmp_path / "pictures", {"a": 2, "b": 2})
    (tmp_path / "list.csv").write_text("path,label\npictures/a/a_000.png,a\n")
    found = {name: find_source(tmp_path / name) for name in ("shards", "shards/a.tfrecord", "eval.h5", "pictures", "list.csv")}
    assert {name: source.name for name, source in found.items()} == {
        "shards": "tfrecord", "shards/a.tfrecord": "tfrecord", "eval.h5": "hdf5", "pictures": "folder", "list.csv": "csv",
    }
    assert infer_kind(shards) == ("embeddings", "shards is embedding clip data")
    assert infer_kind(pictures)[0] == "image"
    with pytest.raises(TrillaError, match=r"packed embeddings data \(hdf5\).*input: \{type: embeddings\}"):
        read_source(tmp_path / "eval.h5")
    with pytest.raises(TrillaError, match=r"packed embeddings data \(tfrecord\): read it with input: \{type: embeddings\}, not image"):
        trilla.train(load_config(data=shards, overrides=["input.type=image", f"run.dir={tmp_path / 'runs'}"]))
    with pytest.raises(TrillaError, match="input type embeddings reads hdf5 or tfrecord data, which this is not"):
        trilla.train(load_config(data=pictures, overrides=["input.type=embeddings", "task=multilabel", f"run.dir={tmp_path / 'runs'}"]))
