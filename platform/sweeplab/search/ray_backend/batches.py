"""Fused trials on Ray Tune (``sweep.fuse_trials`` > 1): each Tune trial carries a batch.

    driver                                   Ray worker (one per Tune trial)
    ------                                   -------------------------------
    Tune's BasicVariantGenerator: as many    claims up to fuse_trials trials of one shape
      Tune trials as the sweep lacks           under the sweep's claim lock, as a local
      batches (and their retries)              worker does (optuna_backend.take_batch);
    every 0.5 s: a progress event for each     trains them as one batched model, the
      trial that ended                         spec's pruner pruning each alone; tells the
    the end, or a Ctrl-C or SIGTERM (Ray      study how each ended; a Tune trial that
      stopped, ``driver.fit``): a batch whose  finds none left ends at once
      worker died is failed and queued again
      (claims.Recovery), for resume

Ray's schedulers stop whole Tune trials, not one trial of a batch: a spec with a
scheduler and ``fuse_trials`` > 1 is refused (``spec._sweep``); ``sweep.pruner`` prunes.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from sweeplab.logs import quiet_libraries
from sweeplab.search.ray_backend.searcher import FINAL
from sweeplab.search.ray_backend.worker import RaySweep
from sweeplab.search.sweep import Sweep
from sweeplab.training.fusing import fused_count

BATCH = "sweeplab_batch"  # in a Tune trial's config: it carries a batch of trials


def carries_batches(sweep: Sweep) -> bool:
    """Whether the sweep's Tune trials each carry a batch (``fuse_trials`` > 1 fuses)."""
    return isinstance(sweep.exp.sweep.fuse_trials, int) and fused_count(sweep.exp, gpu=False) > 1


def batch_samples(sweep: Sweep) -> int:
    """Tune's ``num_samples``: a Tune trial per batch the sweep lacks, and per retry a
    failed trial could take (a Tune trial that finds none left ends at once)."""
    spec = sweep.exp.sweep
    lacking = max(0, sweep.target - sweep.counts.taken)
    batches = math.ceil(lacking / fused_count(sweep.exp, gpu=False))
    return batches + lacking * (spec.max_retries + spec.death_retries)


def run_ray_batch(config: dict[str, Any], *, sweep: RaySweep) -> None:
    """One Tune trial: a batch of the sweep's trials, claimed, trained and told here."""
    from sweeplab.search.claims import owner
    from sweeplab.search.optuna_backend.worker import take_batch

    quiet_libraries(training=True)  # a Ray worker's start is an entry point
    opened = Sweep.open(sweep.store, sweep.name, stream=owner())
    told = take_batch(opened)
    tune.report({"trials": len(told), FINAL: 1})
