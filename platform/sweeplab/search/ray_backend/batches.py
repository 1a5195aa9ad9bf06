"""Fused trials on Ray Tune (``sweep.fuse_trials`` > 1 or auto): each Tune trial carries
a batch.

    driver                                   Ray worker (one per Tune trial)
    ------                                   -------------------------------
    Tune's BasicVariantGenerator: a Tune     claims up to fuse_trials trials of one shape
      trial per trial the sweep lacks (and     (no more than its share of the unfinished
      per retry), a batch being one or more    ones among the Tune trials at once) under
                                               the claim lock, as a local worker does
                                               (optuna_backend.take_batch);
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

from typing import Any

from ray import tune

from sweeplab.logs import quiet_libraries
from sweeplab.search.options import RayOptions
from sweeplab.search.ray_backend.searcher import FINAL
from sweeplab.search.ray_backend.worker import RaySweep
from sweeplab.search.sweep import Sweep
from sweeplab.training.fusing import fused_count

# in a Tune trial's config: it carries a batch of trials, a share among this many
BATCH = "sweeplab_batch"


def carries_batches(sweep: Sweep, options: RayOptions) -> bool:
    """Whether the sweep's Tune trials each carry a batch: ``fuse_trials`` > 1 or
    ``auto`` fuses, and a trial trains on one worker (``auto`` with ``--workers-per-trial``
    above 1 trains one configuration a Tune trial; a number is refused,
    ``RayBackend.check``)."""
    return fused_count(sweep.exp, gpu=False) > 1 and options.workers_per_trial == 1


def concurrent_trials(options: RayOptions, max_concurrent: int | None) -> int:
    """How many Tune trials the cluster runs at once, as it is now: its CPUs (and GPUs)
    over a trial's, and no more than ``sweep.max_concurrent``."""
    import ray

    have = ray.cluster_resources()
    count = int(have.get("CPU", 1.0) // options.cpus_per_trial)
    if options.gpus_per_trial > 0:
        count = min(count, int(have.get("GPU", 0.0) // options.gpus_per_trial))
    return max(1, min(count, max_concurrent or count))


def run_ray_batch(config: dict[str, Any], *, sweep: RaySweep) -> None:
    """One Tune trial: a batch of the sweep's trials, no more than a share of the
    unfinished ones among the Tune trials that run at once (``config[BATCH]``; as local
    workers share them), claimed, trained and told here."""
    from sweeplab.search.claims import owner
    from sweeplab.search.optuna_backend.worker import take_batch

    quiet_libraries(training=True)  # a Ray worker's start is an entry point
    opened = Sweep.open(sweep.store, sweep.name, stream=owner())
    told = take_batch(opened, workers=int(config[BATCH]))
    tune.report({"trials": len(told), FINAL: 1})
