"""The defaults of `trilla train --data FOLDER`, untuned, on scikit-learn's real handwritten digits."""

from trilla import load_config, train
from trilla.datasets import write_sklearn_digits


def test_defaults_learn_sklearn_digits(tmp_path):
    data = write_sklearn_digits(tmp_path / "digits")
    assert len(list(data.rglob("*.png"))) == 1797
    run = train(load_config(data=data, overrides=[f"run.dir={tmp_path / 'runs'}", "train.progress=false"]))
    metrics = run.metrics
    assert metrics["test/samples"] == 270
    assert metrics["test/accuracy"] >= 0.97, metrics
    assert metrics["test/balanced_accuracy"] >= 0.97
    assert metrics["test/majority_baseline"] < 0.15
