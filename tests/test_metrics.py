import numpy as np
from sklearn.metrics import balanced_accuracy_score

from trilla import metrics as M


def _data(n=400, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 2.0 * np.eye(classes)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return targets, probs


def test_metrics_agree_with_direct_computation():
    targets, probs = _data()
    out = M.classification_metrics(targets, probs, majority_class=2)
    predicted = probs.argmax(1)
    assert np.isclose(out["test/accuracy"], np.mean(predicted == targets))
    recalls = [np.mean(predicted[targets == c] == c) for c in range(6)]
    assert np.isclose(out["test/balanced_accuracy"], np.mean(recalls))
    assert np.isclose(out["test/balanced_accuracy"], balanced_accuracy_score(targets, predicted))
    ranks = np.argsort(-probs, axis=1)
    for k in range(1, 6):
        assert np.isclose(out[f"test/top_{k}"], np.mean([t in r[:k] for t, r in zip(targets, ranks)]))
    assert "test/top_6" not in out
    assert np.isclose(out["test/majority_baseline"], np.mean(targets == 2))
    assert out["test/top_1"] <= out["test/top_2"] <= out["test/top_5"]


def test_binary_topk_and_baseline():
    targets = np.array([0] * 87 + [1] * 13)
    probs = np.tile([0.9, 0.1], (100, 1))  # always the majority: the study's T1-T3
    out = M.classification_metrics(targets, probs, majority_class=0)
    assert out["test/accuracy"] == out["test/majority_baseline"] == 0.87
    assert out["test/balanced_accuracy"] == 0.5 and out["test/top_2"] == 1.0 and out["test/top_1"] == 0.87
    assert M.near_baseline(out["test/accuracy"], out["test/majority_baseline"])
    assert not M.near_baseline(0.99, 0.87)


def test_confusion_and_most_confused():
    targets = np.array([0, 0, 1, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 2, 2, 1, 2]]
    matrix = M.confusion(targets, probs, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 2], [0, 0, 1]]
    assert M.most_confused(matrix, ["a", "b", "c"]) == [("b", "c", 2), ("a", "b", 1)]
    table = M.per_class(targets, probs, ["a", "b", "c"])
    assert table["support"].tolist() == [2, 3, 1] and np.isclose(table.loc[1, "recall"], 1 / 3)
