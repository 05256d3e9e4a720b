"""What a run predicts is one registered objective: the built-in ones answer and combine as their users
expect, and a new one (ordered grades, docs/examples/grades_objective.py, written as a user would) is one
class, which trains, reports, predicts and reloads with no change anywhere else."""

import numpy as np
import pytest
import torch

from conftest import docs_example, make_image_folder
from trilla import load_config, train
from trilla.errors import TrillaError
from trilla.objectives import list_objectives, objective
from trilla.runs import Run


def test_the_built_in_objectives_and_what_each_answer_says():
    assert list_objectives() == ["bipolar", "classification", "multilabel", "regression"]
    p = np.array([0.2, 0.7, 0.1])
    single = objective("classification").answer(p, ["a", "b", "c"], np.full(3, 0.5), top_k=2)
    assert single == {"predictions": [{"label": "b", "probability": pytest.approx(0.7)}, {"label": "a", "probability": pytest.approx(0.2)}]}
    several = objective("multilabel").answer(np.array([0.9, 0.3, 0.6]), ["a", "b", "c"], np.array([0.5, 0.2, 0.7]), top_k=1)
    assert [found["label"] for found in several["predictions"]] == ["a", "b"]  # above their own thresholds, top_k aside
    assert objective("regression").answer(np.array([0.25, -0.5]), ["valence", "arousal"], np.zeros(2), 5) == {
        "values": {"valence": 0.25, "arousal": -0.5}
    }
    windows = np.array([[0.9, 0.1], [0.1, 0.2]])
    assert objective("classification").combine(windows).tolist() == pytest.approx([0.5, 0.15])
    assert objective("multilabel").combine(windows).tolist() == pytest.approx([0.9, 0.2])  # heard in one window: in the whole
    logits = torch.tensor([[2.0, -2.0]])
    assert torch.allclose(objective("bipolar").outputs(logits), (torch.tanh(logits) + 1) / 2)
    assert torch.allclose(objective("multilabel").outputs(logits), torch.sigmoid(logits))


def test_an_unknown_objective_is_named_with_the_closest_one(tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 8, "b": 8})
    config = load_config(data=data, overrides=["train.objective=multilable", f"run.dir={tmp_path / 'runs'}", "train.progress=false"])
    with pytest.raises(TrillaError, match="did you mean 'multilabel'"):
        train(config)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture
def grades():
    """docs/examples/grades_objective.py imported (which registers it), and unregistered after the test."""
    from trilla import objectives

    with docs_example("grades_objective") as example:
        yield example.Grades
        objectives._OBJECTIVES.pop(example.Grades.name)


def test_a_new_objective_is_one_class_that_trains_reports_predicts_and_reloads(tmp_path, grades):
    data = make_image_folder(tmp_path / "d", {"0": 24, "1": 24, "2": 24})
    run = train(load_config(data=data, overrides=[
        f"train.objective={grades.name}", "data.image_size=16", "train.epochs=4", "train.lr=0.01", "train.progress=false",
        f"run.dir={tmp_path / 'runs'}",
    ]))
    assert 0 <= run.metrics["test/grade_error"] <= 2
    assert "test/accuracy" in run.metrics  # what the base objective evaluates is kept
    reloaded = Run(run.path)
    assert reloaded.config.objective == grades.name
    assert type(reloaded.predictor().objective) is grades  # the checkpoint names it
    answers = reloaded.predict(sorted((data / "2").iterdir())[:4])
    assert all(0 <= a["grade"] <= 2 and len(a["predictions"]) == 3 for a in answers)
    assert np.mean([a["grade"] for a in answers]) > 1  # the pictures of grade 2 are graded high
    assert "grade_error" in (run.path / "metrics.json").read_text()
