"""The one place trilla reaches past Optuna's public API. A sweep's workers claim queued trials, fail and
requeue those a dead worker left running, read a trial's attributes by id and beat its heartbeat: Optuna
offers these only on its storage object (`study._storage`) and by trial id (`trial._trial_id`), both
private. Kept here, behind these few functions, and pinned by tests/test_sweep.py against the installed
Optuna, so an Optuna release that moves them breaks one module and one test, not the sweep."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState


@contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks its heartbeat API experimental (since 2.8); the warning tells a user nothing to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def claim(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial | None:
    """A WAITING trial set RUNNING atomically, as a live trial; None when another worker took it first."""
    try:
        taken = study._storage.set_trial_state_values(trial_id(frozen), state=TrialState.RUNNING)
    except UpdateFinishedTrialError:  # another worker claimed and finished it since the list was read
        return None
    return optuna.Trial(study, trial_id(frozen)) if taken else None


def fail(study: optuna.Study, frozen: FrozenTrial) -> bool:
    """Mark a RUNNING trial failed; False when another worker finished it first."""
    try:
        return study._storage.set_trial_state_values(trial_id(frozen), state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def requeue(study: optuna.Study, frozen: FrozenTrial) -> None:
    """Queue a failed trial again with its parameters, as Optuna does for a trial whose heartbeat stopped."""
    with quiet_experimental():
        study._storage.get_heartbeat_stale_trial_callback()(study, study._storage.get_trial(trial_id(frozen)))


def user_attrs(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> dict[str, Any]:
    """A trial's attributes as the storage holds them now (another worker may have written them)."""
    return study._storage.get_trial(trial_id(trial)).user_attrs


def beat(study: optuna.Study, trial: optuna.Trial) -> None:
    """One heartbeat for a trial this worker trains."""
    study._storage.record_heartbeat(trial_id(trial))
