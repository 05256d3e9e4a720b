"""Classification metrics, computed with scikit-learn so that they mean what the textbooks say.

Multi-label runs report macro mAP (average precision per class, averaged), mean AUC and d' as AudioSet
papers do, and also the AudioSet study's own two numbers under names that cannot be mistaken for
them: `study_jaccard` (what the study called "mAP") and `study_psr` (its recall).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

log = logging.getLogger("trilla")


def classification_metrics(targets: np.ndarray, probs: np.ndarray, majority_class: int, prefix: str = "test") -> dict[str, float]:
    """Accuracy, balanced accuracy, top-k for k = 1..min(5, classes) and the majority baseline.

    The baseline is the accuracy of always answering the training set's most frequent class: the
    guitar/bass study's first models scored exactly that while having learned nothing.
    """
    n_classes = probs.shape[1]
    labels = np.arange(n_classes)
    predicted = probs.argmax(1)
    absent = n_classes - len(np.unique(targets))
    if absent:
        log.info("%s: %d of %d classes have no samples; balanced accuracy is the mean recall over the %d that do",
                 prefix, absent, n_classes, n_classes - absent)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # said once above, in words
        balanced = balanced_accuracy_score(targets, predicted)
    out = {
        f"{prefix}/accuracy": accuracy_score(targets, predicted),
        f"{prefix}/balanced_accuracy": balanced,
        f"{prefix}/majority_baseline": float(np.mean(targets == majority_class)),
        f"{prefix}/loss": log_loss(targets, np.clip(probs, 1e-7, 1.0), labels=labels),
        f"{prefix}/samples": int(len(targets)),
    }
    for k in range(1, min(5, n_classes) + 1):
        if k >= n_classes:
            out[f"{prefix}/top_{k}"] = 1.0
        elif n_classes == 2:
            out[f"{prefix}/top_{k}"] = out[f"{prefix}/accuracy"]
        else:
            out[f"{prefix}/top_{k}"] = top_k_accuracy_score(targets, probs, k=k, labels=labels)
    return {key: float(value) for key, value in out.items()}


def near_baseline(accuracy: float, baseline: float, tolerance: float = 0.01) -> bool:
    return accuracy <= baseline + tolerance


def per_class(targets: np.ndarray, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, probs.argmax(1), labels=np.arange(len(classes)), zero_division=0
    )
    return pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1, "support": support})


def confusion(targets: np.ndarray, probs: np.ndarray, n_classes: int) -> np.ndarray:
    return confusion_matrix(targets, probs.argmax(1), labels=np.arange(n_classes))


def most_confused(matrix: np.ndarray, classes: list[str], limit: int = 10) -> list[tuple[str, str, int]]:
    """(true, predicted, count) off the diagonal, most frequent first, as fastai's most_confused."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs = [(classes[i], classes[j], int(off[i, j])) for i, j in zip(*np.nonzero(off))]
    return sorted(pairs, key=lambda p: -p[2])[:limit]


def regression_metrics(targets: np.ndarray, values: np.ndarray, names: list[str], prefix: str = "test") -> dict[str, float]:
    """Per output: R^2, Pearson r and RMSE (scikit-learn and scipy), as the affect studies report them."""
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_squared_error, r2_score

    out = {}
    for i, name in enumerate(names):
        t, v = targets[:, i], values[:, i]
        out[f"{prefix}/r2_{name}"] = r2_score(t, v)
        out[f"{prefix}/pearson_{name}"] = pearsonr(t, v).statistic if np.std(v) > 0 and np.std(t) > 0 else float("nan")
        out[f"{prefix}/rmse_{name}"] = float(np.sqrt(mean_squared_error(t, v)))
    out[f"{prefix}/samples"] = int(len(targets))
    return {key: float(value) for key, value in out.items()}


def group_metrics(truth: np.ndarray, predicted: np.ndarray, majority_class: int, prefix: str = "test") -> dict[str, float]:
    """Accuracy, balanced accuracy and the majority baseline of hard predictions (no probabilities)."""
    return {
        f"{prefix}/accuracy": float(accuracy_score(truth, predicted)),
        f"{prefix}/balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        f"{prefix}/majority_baseline": float(np.mean(truth == majority_class)),
    }


def per_class_ranking(targets: np.ndarray, probs: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Average precision and ROC AUC of each class, with its positives; NaN where undefined (AP with no
    positives, AUC without both positives and negatives)."""
    targets = targets.astype(bool)
    rows = []
    for c, name in enumerate(names):
        positives = int(targets[:, c].sum())
        ap = average_precision_score(targets[:, c], probs[:, c]) if positives else np.nan
        auc = roc_auc_score(targets[:, c], probs[:, c]) if 0 < positives < len(targets) else np.nan
        rows.append({"class": name, "average_precision": ap, "auc": auc, "positives": positives})
    return pd.DataFrame(rows)


def macro_average_precision(targets: np.ndarray, probs: np.ndarray) -> float:
    """Macro mAP over the classes that have positives (NaN when none has), for validation each epoch."""
    present = np.asarray(targets).astype(bool).any(0)
    if not present.any():
        return float("nan")
    return float(average_precision_score(np.asarray(targets)[:, present].astype(bool), np.asarray(probs)[:, present], average="macro"))


def tune_thresholds(targets: np.ndarray, probs: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per class, the probability threshold that maximizes F1 on these (validation) examples; `default`
    for a class without positives there. Taken from scikit-learn's precision-recall curve, whose
    thresholds are the observed scores."""
    from sklearn.metrics import precision_recall_curve

    targets = np.asarray(targets).astype(bool)
    out = np.full(targets.shape[1], default, dtype=np.float64)
    for c in range(targets.shape[1]):
        if not targets[:, c].any():
            continue
        precision, recall, thresholds = precision_recall_curve(targets[:, c], probs[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        out[c] = float(thresholds[int(np.argmax(f1))])
    return out


def thresholded_metrics(targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, prefix: str = "test") -> dict[str, float]:
    """Micro and macro F1, and the share of examples whose label set is predicted exactly, at per-class thresholds."""
    from sklearn.metrics import f1_score

    targets = np.asarray(targets).astype(bool)
    predicted = probs >= thresholds[None, :]
    return {
        f"{prefix}/micro_f1": float(f1_score(targets, predicted, average="micro", zero_division=0)),
        f"{prefix}/macro_f1": float(f1_score(targets, predicted, average="macro", zero_division=0)),
        f"{prefix}/exact_match": float((predicted == targets).all(1).mean()),
    }


def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, prefix: str = "test") -> dict[str, float]:
    """Macro mAP over the classes that have positives (the others are left out and counted), mean AUC,
    d' = sqrt(2) * Phi^-1(mean AUC), and the study's per-clip Jaccard index and pooled recall of the
    predictions rounded at 0.5 (a clip with neither labels nor predictions agrees fully)."""
    targets = targets.astype(bool)
    table = per_class_ranking(targets, probs, [str(c) for c in range(targets.shape[1])])
    mean_auc = float(table["auc"].mean())
    predicted = probs >= 0.5
    union = (predicted | targets).sum(1)
    both = (predicted & targets).sum(1)
    jaccard = np.where(union > 0, both / np.maximum(union, 1), 1.0)
    return {
        f"{prefix}/mAP": float(table["average_precision"].mean()),
        f"{prefix}/mean_auc": mean_auc,
        f"{prefix}/d_prime": float(np.sqrt(2.0) * norm.ppf(mean_auc)),
        f"{prefix}/classes_without_positives": float(table["average_precision"].isna().sum()),
        f"{prefix}/study_jaccard": float(jaccard.mean()),
        f"{prefix}/study_psr": float(both.sum() / max(int(targets.sum()), 1)),
        f"{prefix}/samples": float(len(targets)),
    }

