"""One class per item: softmax and cross-entropy (class weights and label smoothing in training), the
top-k classes as the answer, a confusion matrix and the worst predicted in the evaluation. The base
class's defaults are this objective's."""

from __future__ import annotations

from trilla.objectives import register
from trilla.objectives.base import Objective


@register
class SingleLabel(Objective):
    name = "classification"
    title = "single-label"
