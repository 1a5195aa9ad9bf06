"""Storage under concurrency: 2 and 4 processes sharing one study, 500 trials of a
trivial objective, on a SQLite file and on PostgreSQL.

    optuna     each process runs study.optimize with MaxTrialsCallback(500) on the
               storage URL: what a hand-written script does
    sweeplab   a sweep of that many trials; each process takes its trials as `sweeplab
               agent` does (the Optuna backend's worker loop, take_trials): under the
               sweep's claim lock, counting the trials first, with heartbeats
               (open_storage's SQLite settings: write-ahead log, 60 s busy timeout),
               with the same trivial objective in place of training

Printed: trials/second (first trial start to last trial end), the final count of
finished trials, and the lock errors the processes hit ("database is locked",
deadlocks, serialization failures).
Target: exact counts and zero errors; the recommendation follows the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import optuna
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.store import Store

ROOT = Path(__file__).resolve().parents[1]
LOCK_WORDS = ("database is locked", "deadlock", "could not serialize", "lock timeout")


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -10, 10) ** 2


def sweep_spec(total: int) -> dict[str, object]:
    """The sweep the sweeplab processes share (its training is never run here)."""
    return {
        "name": "storage",
        "model": {"arch": "mlp", "hidden": [8]},
        "data": {"dataset": "iris"},
        "train": {"max_epochs": 1},
        "objective": {"metric": "val_loss", "mode": "min"},
        "search_space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        "sweep": {"trials": total, "sampler": "random", "seed": 0},
    }


def store_for(url: str, folder: str) -> Store:
    """The sweep's store: ``url`` its Optuna storage, MLflow in a SQLite file beside."""
    return Store.resolve(Path(folder), f"sqlite:///{folder}/mlflow.db", url)


def worker(kind: str, url: str, study_name: str, total: int, folder: str) -> None:
    """One process; prints {"ran": n, "errors": [...]} as JSON."""
    from sweeplab.search.optuna_backend.worker import take_trials
    from sweeplab.search.sweep import Sweep, Work

    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    warnings.simplefilter("ignore")
    ran, errors = 0, []
    if kind == "optuna":
        study = optuna.load_study(study_name=study_name, storage=url)
        enough = optuna.study.MaxTrialsCallback(total, states=None)

        def counted(trial: optuna.Trial) -> float:
            nonlocal ran
            ran += 1
            return objective(trial)

        try:
            study.optimize(counted, callbacks=[enough], catch=(Exception,))
        except Exception as exc:  # a lock error outside a trial ends the process
            errors.append(f"{type(exc).__name__}: {exc}")
    else:
        sweep = Sweep.open(store_for(url, folder), study_name, stream=str(os.getpid()))

        def counted(trial: optuna.Trial) -> float:
            nonlocal ran
            ran += 1
            return objective(trial)

        while True:  # a lock error ends take_trials: count it, and take trials again
            try:
                take_trials(sweep, Work(), objective=counted)
                break
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > 20:
                    break
    print(json.dumps({"ran": ran, "errors": errors}))


def run(
    kind: str, url: str, processes: int, total: int, name: str, folder: str
) -> dict[str, object]:
    if kind == "optuna":
        optuna.create_study(study_name=name, storage=url)
    else:
        from sweeplab.search.api import create_sweep

        create_sweep(sweep_spec(total), store=store_for(url, folder), name=name)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, url, name, str(total), folder],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [p.communicate() for p in procs]
    errors = 0
    for out, err in outputs:
        lines = out.strip().splitlines()
        report = json.loads(lines[-1]) if lines else {"errors": ["no report: " + err[-300:]]}
        errors += sum(any(w in e.lower() for w in LOCK_WORDS) for e in report["errors"])
        errors += sum(err.lower().count(w) for w in LOCK_WORDS)
    trials = optuna.load_study(study_name=name, storage=url).trials
    finished = sum(t.state.is_finished() for t in trials)
    # from the first trial's start to the last one's end: the processes' start-up left out
    first = min(t.datetime_start for t in trials if t.datetime_start)
    last = max(t.datetime_complete for t in trials if t.datetime_complete)
    busy = (last - first).total_seconds()
    return {"busy": busy, "finished": finished, "created": len(trials), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)  # KIND URL STUDY TOTAL DIR
    args = parser.parse_args()
    if args.worker:
        kind, url, study, total, folder = args.worker
        worker(kind, url, study, int(total), folder)
        return
    if args.tiny:
        args.trials = 20
    sys.path.insert(0, str(ROOT))
    from tests.helpers import postgres_server

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    n = args.trials
    print(f"storage under concurrency: {n} trials of a trivial objective, one study")
    print(
        f"  {'database':10s} {'procs':>5s} {'runner':8s} {'trials/s':>8s} "
        f"{'finished':>8s} {'created':>7s} {'lock errors':>11s}"
    )
    exact = True
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        for database in ("sqlite", "postgresql"):
            for processes in (2,) if args.tiny else (2, 4):  # tiny: the same code paths
                for kind in ("optuna", "sweeplab"):
                    name = f"{kind}-{processes}"
                    url = (
                        f"sqlite:///{tmp}/{name}.db"
                        if database == "sqlite"
                        else server.create(f"{kind}_{processes}")
                    )
                    r = run(kind, url, processes, n, name, tmp)
                    print(
                        f"  {database:10s} {processes:5d} {kind:8s} "
                        f"{r['finished'] / r['busy']:8.1f} {r['finished']:8d} "  # type: ignore[operator]
                        f"{r['created']:7d} {r['errors']:11d}"
                    )
                    if kind == "sweeplab":
                        exact &= r["finished"] == n and r["created"] == n and r["errors"] == 0
    print(f"target: sweeplab exact counts and zero lock errors: {'met' if exact else 'MISSED'}")


if __name__ == "__main__":
    main()
