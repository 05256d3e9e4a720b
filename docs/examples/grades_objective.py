"""An objective of your own: ordered grades (0 < 1 < 2), trained with cross-entropy plus the distance of the
expected grade from the true one, answering the expected grade beside the top labels, and evaluated with
the mean grade error beside what a classification writes. Importing this module registers it;
`train.objective: grades_in_a_test` asks for it. tests/test_objectives.py trains, reports, predicts and
reloads it.
"""

from __future__ import annotations

import numpy as np
import torch

from trilla.objectives import Objective, register


@register
class Grades(Objective):
    """Ordered classes (grade 0 < 1 < 2): cross-entropy plus the distance of the expected grade from the
    true one, and an answer that says the expected grade."""

    name = "grades_in_a_test"
    title = "ordered grades"

    def losses(self, class_weights, label_smoothing):
        def loss(logits, targets):
            ranks = torch.arange(logits.shape[1], dtype=torch.float, device=logits.device)
            expected = (torch.softmax(logits, 1) * ranks).sum(1)
            return torch.nn.functional.cross_entropy(logits, targets) + (expected - targets.float()).abs().mean()

        return loss, loss

    def answer(self, p, classes, thresholds, top_k):
        return {**super().answer(p, classes, thresholds, top_k), "grade": float((p * np.arange(len(p))).sum())}

    def evaluate(self, predictor, data, positions, outputs, majority_class, out_dir, prefix, data_cfg):
        result = super().evaluate(predictor, data, positions, outputs, majority_class, out_dir, prefix, data_cfg)
        expected = (outputs * np.arange(outputs.shape[1])).sum(1)
        result[f"{prefix}/grade_error"] = float(np.abs(expected - data.targets[positions]).mean())
        return result
