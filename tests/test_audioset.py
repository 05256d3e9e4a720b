"""AudioSet's embedding formats (TFRecord SequenceExample, packed HDF5, class list), read without TensorFlow."""

import h5py
import numpy as np
import pandas as pd
import pytest

from trilla.data import audioset
from trilla.errors import TrillaError


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
