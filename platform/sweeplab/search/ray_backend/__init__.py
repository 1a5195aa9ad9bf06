"""The Ray Tune backend (``sweeplab sweep --backend ray``).

The sweep is still one Optuna study in sweeplab's storage: Ray's ``OptunaSearch`` asks
the spec's sampler (same seed, same distributions as the Optuna backend) for each
trial and tells the study how it ended, so ``status``, ``compare``, ``resume`` and the
registry read a Ray sweep like any other. Ray decides where and when trials run (its
schedulers, resources per trial, ``max_concurrent``, retries, a cluster).

    driver                               Ray worker (one per trial)
    ------                               --------------------------
    SweepSearch.suggest  → config: the   the config's params on optuna.Trial(study, id):
      params and the Optuna trial id     sweep_trial (MLflow child run), TuneReport
                                         each epoch; a final report with the value
    scheduler: continue / stop           stop = SystemExit at a report → run "pruned"
    SweepSearch.on_trial_complete:
      final report → COMPLETE, none → PRUNED, error → FAIL
    TrialEnd callback: ends a run its worker could not end, progress events

    schedulers.py  Tune's schedulers from the spec
    searcher.py    SweepSearch: Ray's OptunaSearch on the sweep's study
    worker.py      a trial in a Ray worker process, and what it reports
    driver.py      RayBackend: start Ray, run Tune, end what a stopped worker left open
    pbt.py         population-based training (workers create their Optuna trials)
    parallel.py    data-parallel trials on Ray Train
    batches.py     fused trials: each Tune trial claims and trains a batch (fuse_trials > 1)

Its options are ``search.options.RayOptions`` (imports no Ray). Ray is imported by the
modules that use it, so the CLI and the Optuna backend never load it.
"""
