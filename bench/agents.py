"""Bookkeeping per trial: 3 agents on PostgreSQL, 300 trials of a tiny training.

    optuna      3 processes, study.optimize of a 10 ms objective (a sleep), same server
    sweeplab    `sweeplab sweep` in one process and 2 `sweeplab agent`s, real trials of
                one epoch (iris, an MLP of 8 units): the Optuna trial on PostgreSQL (ask,
                claim, heartbeat, tell), the MLflow child run on PostgreSQL (params,
                tags, metrics, the checkpoint file, end), the agents' coordination

What each trial spent training is read from the sweep, not timed here: every trial
records its seconds inside ``fit`` (its ``fit_seconds`` attribute). Overhead per trial =
(time x 3 processes - the objectives' seconds) / trials, for two times:

    wall        from starting the processes to the last one's exit: imports, the
                databases' set-up and the sweep's end included (fixed costs, spread
                over the trials)
    trials      from the first trial's start to the last trial's end, as the Optuna
                storage recorded them: the cost each further trial adds, which is
                what the target (<= 100 ms beyond Optuna's) is judged on
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 300
AGENTS = 3
WORK_S = 0.010  # the bare Optuna objective's sleep
NAME = "bookkeeping"


def spec(trials: int) -> dict[str, Any]:
    return {
        "name": NAME,
        "model": {"arch": "mlp", "hidden": [8]},
        "data": {"dataset": "iris"},
        "train": {"max_epochs": 1},
        "objective": {"metric": "val_acc", "mode": "max"},
        "search_space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        "sweep": {"trials": trials, "sampler": "random", "seed": 0},
        "tracking": {"experiment": NAME, "register_as": None},
    }


def run_worker(role: str, storage: str, tracking: str, root: str, trials: str) -> None:
    """One of the 3 processes (``--role``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if role == "optuna":
        study = optuna.load_study(study_name="bare", storage=storage)

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_float("train.lr", 1e-4, 1e-1, log=True)
            time.sleep(WORK_S)
            return float(lr)

        # each process takes trials until the study has TRIALS of them, as the agents do
        enough = optuna.study.MaxTrialsCallback(int(trials), states=None)
        study.optimize(objective, callbacks=[enough])
        return

    from sweeplab.logs import quiet_libraries
    from sweeplab.search import continue_sweep, run_sweep
    from sweeplab.spec import spec_from_dict
    from sweeplab.store import Store

    quiet_libraries(training=True)
    store = Store.resolve(Path(root), tracking, storage)
    if role == "sweep":
        run_sweep(spec_from_dict(spec(int(trials))), store, name=NAME)
        return
    while not _created(storage, NAME):
        time.sleep(0.1)
    continue_sweep(store, NAME)


def _created(storage: str, name: str) -> bool:
    """The sweep exists with its spec (a study is created first, its attributes after)."""
    import optuna

    from sweeplab.search.keys import ATTR_SPEC

    if name not in optuna.get_all_study_names(storage):
        return False
    return ATTR_SPEC in optuna.load_study(study_name=name, storage=storage).user_attrs


def timed(
    roles: list[str], storage: str, tracking: str, root: Path, trials: int
) -> tuple[datetime, datetime]:
    """When the processes were started, and when the last one exited."""
    started = datetime.now()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--role", role, storage, tracking, str(root), str(trials)],
            cwd=ROOT,
        )
        for role in roles
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"a {roles} process failed")
    return started, datetime.now()


def finished(storage: str, study: str) -> tuple[int, datetime, datetime, float]:
    """How many trials finished, the first one's start, the last one's end (Optuna
    records local times without a zone, as ``datetime.now()``), and the seconds their
    objectives spent training (sweeplab's: as each trial recorded; Optuna's: 10 ms each)."""
    import optuna

    from sweeplab.search.keys import ATTR_FIT_SECONDS

    trials = optuna.load_study(study_name=study, storage=storage).trials
    ended = [t for t in trials if t.state.is_finished() and t.datetime_start is not None]
    first = min(t.datetime_start for t in ended if t.datetime_start is not None)
    last = max(t.datetime_complete for t in ended if t.datetime_complete is not None)
    work = sum(float(t.user_attrs.get(ATTR_FIT_SECONDS, WORK_S)) for t in ended)
    return len(ended), first, last, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--role", choices=["optuna", "sweep", "agent"], help=argparse.SUPPRESS)
    parser.add_argument("where", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:  # one of the processes timed
        run_worker(args.role, *args.where)
        return
    trials = 12 if args.tiny else args.trials
    sys.path.insert(0, str(ROOT))
    import optuna
    from tests.helpers import postgres_server

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        storage, tracking = server.create("optuna"), server.create("mlflow")
        optuna.create_study(study_name="bare", storage=storage)
        bare = timed(["optuna"] * AGENTS, storage, tracking, Path(tmp), trials)
        ours = timed(["sweep"] + ["agent"] * (AGENTS - 1), storage, tracking, Path(tmp), trials)
        found = {"optuna": finished(storage, "bare"), "sweeplab": finished(storage, NAME)}
    print(
        f"{AGENTS} processes, {trials} trials, PostgreSQL; Optuna's objective sleeps "
        f"{WORK_S * 1000:.0f} ms, sweeplab's trains 1 epoch (its recorded fit seconds)"
    )
    print(
        "           trials   wall     per trial   first to last trial  per trial  "
        "start-up  end   objective per trial"
    )
    extra = {}
    for label, (launched, exited) in (("optuna", bare), ("sweeplab", ours)):
        count, first, last, work = found[label]
        wall, span = (exited - launched).total_seconds(), (last - first).total_seconds()
        extra[label] = (per_trial(wall, work, trials), per_trial(span, work, trials))
        print(
            f"{label:9s} {count:6d} {wall:6.1f} s {extra[label][0]:7.1f} ms   {span:10.1f} s"
            f"      {extra[label][1]:7.1f} ms  {(first - launched).total_seconds():6.1f} s"
            f"  {(exited - last).total_seconds():4.1f} s  {work / count * 1000:7.1f} ms"
        )
    trial_extra = extra["sweeplab"][1] - extra["optuna"][1]
    wall_extra = extra["sweeplab"][0] - extra["optuna"][0]
    verdict = "met" if trial_extra <= 100 else "MISSED"
    print(
        f"sweeplab's bookkeeping beyond Optuna's, per trial: {trial_extra:.1f} ms ({verdict}: "
        f"target <= 100 ms); {wall_extra:.1f} ms with start-up and the sweep's end spread "
        "over the trials"
    )


def per_trial(seconds: float, work: float, trials: int) -> float:
    """Milliseconds per trial beyond its objective's, over ``AGENTS`` processes."""
    return (seconds * AGENTS - work) / trials * 1000


if __name__ == "__main__":
    main()
