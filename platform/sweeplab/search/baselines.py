"""A sweep's yardstick: the spec's scikit-learn baselines (``training.baselines``) fit on
its split once, stored with the study and logged to its parent run.

Whoever gets there first fits them: a worker with no trial left to claim while others
still train (``optuna_backend.worker._end_work_ahead``: its core would idle), else the sweep's end
(``lifecycle.finish``). Either holds the claim lock, so they are fit once.
"""

from __future__ import annotations

import dataclasses
import logging

from sweeplab.search import keys
from sweeplab.search.sweep import Sweep

logger = logging.getLogger(__name__)


def yardstick(sweep: Sweep) -> None:
    """The spec's scikit-learn baselines fit on the sweep's split, once (an extended
    sweep keeps its first ones: same split, same scores), stored with the study and
    logged to the parent run; a baseline that fails is a warning, not a failed sweep."""
    from sweeplab.data.split import split
    from sweeplab.training.baselines import fit_baselines, wanted

    exp = sweep.exp
    if keys.ATTR_BASELINES in sweep.study.user_attrs:
        return
    data = split(exp.data)
    if not wanted(exp, data):
        return
    try:
        found = fit_baselines(data, seed=exp.sweep.seed)
    except Exception as exc:  # scikit-learn refusing the data must not lose the sweep
        logger.warning("the baselines of sweep %s could not be fit: %s", sweep.name, exc)
        return
    sweep.study.set_user_attr(keys.ATTR_BASELINES, [dataclasses.asdict(b) for b in found])
    metrics = {}
    for b in found:
        metrics[f"baseline.{b.name}.{b.metric}"] = b.value
        metrics[f"baseline.{b.name}.fit_seconds"] = b.seconds
    sweep.tracker.log_metrics(sweep.parent, metrics)
