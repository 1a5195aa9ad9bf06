"""Data-parallel trials: ``sweeplab sweep --backend ray --workers-per-trial N``.

Each trial of a Ray sweep trains on N Ray Train workers with Lightning's DDP strategy
(Ray's ``RayDDPStrategy``: gloo on CPUs, NCCL on GPUs):

    Tune trial (_run_trial)                 Ray Train workers, ranks 0..N-1 (_worker)
    -----------------------                 -----------------------------------------
    TorchTrainer with N workers; waits      rank 0: the trial as run_ray_trial runs it
    TuneReportCallback: rank 0's reports      (one MLflow run, curve, checkpoint, value)
      reach Tune's scheduler                ranks 1..N-1: the same fits, nothing tracked
    the Train run failed (a rank died or    every rank reports each epoch; Ray Train's
      hung) → the reason on the trial,        report is collective, so the ranks are at
      then Tune retries or fails it           the same epoch whenever one is stopped

Who decides when a trial stops, so that every rank stops together:

- Early stopping and the divergence guard are Lightning's EarlyStopping, whose decision
  is reduced over the ranks; the metrics it reads are averaged over the ranks
  (``sync_dist``), so all ranks see the same values and agree.
- A scheduler's stop is decided by Tune on rank 0's report; Ray then ends the trial's
  Train run, every rank at once, and the driver's TrialEnd ends the run as pruned.
- A rank that dies fails the Train run (Ray's worker health check); one that hangs
  fails it when a collective waits longer than ``RANK_TIMEOUT_S``.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeplab.logs import quiet_libraries
from sweeplab.search.keys import ATTR_REASON, ATTR_RUN, TAG_REASON
from sweeplab.search.options import RayOptions
from sweeplab.search.ray_backend.searcher import FINAL, TRIAL_ID
from sweeplab.search.ray_backend.worker import FitHooks, RaySweep, report, run_ray_trial
from sweeplab.search.restarts import members
from sweeplab.search.storage import open_storage
from sweeplab.store import Store
from sweeplab.training.fit import fit

RANK_TIMEOUT_S = 300  # a collective (gradient all-reduce, report) waiting longer fails
CONTROLLER_RETRIES = 5  # Ray Train waits 60 s per try to place a trial's workers


def parallel_trainable(
    sweep: RaySweep, options: RayOptions
) -> tuple[Callable[[dict[str, Any]], None], dict[str, float], int]:
    """The Tune trainable of a data-parallel sweep, its resources, and how many such
    trials the cluster holds at once (their Train workers hold the resources)."""
    import ray

    trainable = functools.partial(_run_trial, sweep=sweep, options=options)
    # the Tune trial only waits for its Train run; a bundle must not be empty
    resources: dict[str, float] = {"cpu": 0, "memory": 1}
    total = ray.cluster_resources()
    workers = options.workers_per_trial
    at_once = total.get("CPU", 0.0) // (workers * options.cpus_per_trial)
    if options.gpus_per_trial:
        at_once = min(at_once, total.get("GPU", 0.0) // (workers * options.gpus_per_trial))
    return trainable, resources, max(1, int(at_once))


def _run_trial(config: dict[str, Any], *, sweep: RaySweep, options: RayOptions) -> None:
    """One data-parallel trial: its Train run on N workers, reporting to this Tune trial."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpus = options.gpus_per_trial
    trainer = TorchTrainer(
        functools.partial(_worker, sweep=sweep),
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=options.workers_per_trial,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": options.cpus_per_trial, "GPU": gpus},
        ),
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo", timeout_s=RANK_TIMEOUT_S),
        run_config=RunConfig(
            name=f"{sweep.name}-trial-{config[TRIAL_ID]}-{os.getpid()}",
            storage_path=str(Path(sweep.store.root, "ray", "train").absolute()),
            # Tune retries the whole trial; workers that cannot be placed for
            # CONTROLLER_RETRIES minutes fail it instead of waiting for ever
            failure_config=FailureConfig(  # type: ignore[call-arg]  # V2 at run time
                max_failures=0, controller_failure_limit=CONTROLLER_RETRIES
            ),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # Ray's V1/V2 types
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:
        _note_failure(sweep.store, int(config[TRIAL_ID]), exc)
        raise


def dead_ranks(exc: Exception) -> list[int]:
    """The ranks of a failed Train run whose worker process died.

    Ray Train's ``WorkerGroupError.worker_failures`` maps a rank to its error: Ray's
    actor-died error itself, or a failed health check that holds it
    (``health_check_failure``) or was caused by it.
    """
    from ray.exceptions import RayActorError

    def died(error: BaseException | None) -> bool:
        for _ in range(5):  # the error, then what it holds or was caused by
            if error is None:
                return False
            if isinstance(error, RayActorError):
                return True
            inner = getattr(error, "health_check_failure", None)
            error = inner if isinstance(inner, BaseException) else error.__cause__
        return False

    failures: dict[int, Exception] = getattr(exc, "worker_failures", None) or {}
    return sorted(rank for rank, error in failures.items() if died(error))


def _note_failure(store: Store, trial_id: int, exc: Exception) -> None:
    """Record why the Train run failed, on the trial and on its MLflow run.

    A rank that died is the reason, also when rank 0 already recorded the error it met
    in a collective with the dead rank ("Connection closed by peer"): which of the two
    comes first is a race. Otherwise rank 0's own error, if it recorded one, stays.
    """
    storage = open_storage(store.storage_url)
    trial = storage.get_trial(trial_id)
    if trial.state.is_finished():
        return
    dead = dead_ranks(exc)
    if dead:
        why = f"data-parallel rank {', '.join(map(str, dead))} died (its worker process ended)"
    elif ATTR_REASON in trial.user_attrs:
        return
    else:
        cause = str(exc).strip().splitlines()
        why = f"a data-parallel rank failed: {cause[0] if cause else type(exc).__name__}"
    storage.set_trial_user_attr(trial_id, ATTR_REASON, why[:1000])
    run_id = trial.user_attrs.get(ATTR_RUN)
    if dead and run_id:  # rank 0 may have ended its run with the collective's error
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=store.tracking_uri).set_tag(run_id, TAG_REASON, why)


def _worker(config: dict[str, Any], *, sweep: RaySweep) -> None:
    """One rank: rank 0 runs and tracks the trial, the others train alongside."""
    import ray.train
    import torch.distributed as dist

    context = ray.train.get_context()
    ranks: list[Any] = [None] * context.get_world_size()
    dist.all_gather_object(ranks, f"{socket.gethostname()}:{os.getpid()}")
    if context.get_world_rank() == 0:
        run_ray_trial(config, sweep=sweep, ranks=ranks)
    else:
        _follow(config, sweep)


def _follow(config: dict[str, Any], sweep: RaySweep) -> None:
    """A rank other than 0: the same fits as rank 0 (same params, seeds and callbacks,
    hence the same collectives), with nothing logged."""
    quiet_libraries(training=True)  # a Ray worker's start is an entry point
    resolved = sweep.exp.with_params(sweep.params(config))
    hooks = FitHooks(resolved.objective.metric, parallel=True)  # as rank 0's RayHooks
    for index, (_, fold, restart) in enumerate(members(resolved)):
        fit(
            resolved,
            seed=resolved.train.seed + restart,
            fold=fold,
            callbacks=hooks.callbacks(index),
            tracking_uri=sweep.store.tracking_uri,
            trainer_options=hooks.trainer_options(),
        )
    report({FINAL: 1}, parallel=True)  # rank 0's final report waits for this one
