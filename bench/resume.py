"""kill -9 mid-trial, then resume: the epochs trained in all against an uninterrupted sweep.

The default MLP on digits with fixed work (every trial --epochs epochs, no pruning, no
early stopping; 2 fused restarts, as the default spec trains), --trials trials of about
30 s each here. Each interrupted run kills the sweep's process with SIGKILL three times,
each time once a trial (a first try: three configurations) is half way through, and runs
`sweeplab resume` after each kill (the last one runs to the end):

    today          train.checkpoint_every: null: a killed trial starts again from epoch 0
    10s            a checkpoint at the end of an epoch once 10 s have passed
    every epoch    train.checkpoint_every: 1

Epochs trained in all: for each try, the epochs it trained itself (a resumed try's
copied epochs are not counted; a killed try's epoch in progress is). Against an
uninterrupted sweep's: trials × epochs. Target: <= 1.1x with checkpoints. The wall time
of the processes (start-ups included) is printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"
NAME = "mlp-digits"


@dataclass
class Outcome:
    epochs: float  # trained in all, by every try
    seconds: float  # the processes' wall time
    trials: int  # complete at the end
    resumed: list[int]  # the epochs the resumed tries went on at


def sets(trials: int, epochs: int, every: str) -> list[str]:
    values = [
        f"sweep.trials={trials}",
        "sweep.sampler=random",
        "sweep.pruner=none",
        "search_space.train.max_epochs=null",
        f"train.max_epochs={epochs}",
        "search_space.train.batch_size=null",  # the same work in every trial
        "train.batch_size=32",
        "train.early_stopping=null",
        f"train.checkpoint_every={every}",
        "tracking.report=false",
        "tracking.baselines=false",
        "tracking.register_as=null",
    ]
    return [arg for value in values for arg in ("--set", value)]


def start(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A sweeplab command in its own process group, its messages in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sweeplab", *args],
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
            cwd=ROOT,
        )


def own_epochs(trial: Any) -> int:
    """The epochs a try reported itself (those it went on after, if it resumed)."""
    return len(trial.intermediate_values) - int(trial.user_attrs.get("sweeplab.resumed_at", 0))


def first_try_half_way(study: Any, epochs: int, killed: Container[int]) -> Any | None:
    """A running first try half way through, not ``killed`` already (a retry is not
    killed again: after sweep.death_retries deaths a configuration is given up, as it
    should be; a killed try stays RUNNING until ``resume`` fails it)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        first = "sweeplab.retry_of" not in t.user_attrs and t.number not in killed
        if first and len(t.intermediate_values) >= epochs / 2:
            return t
    return None


def run(store: Path, args: list[str], epochs: int, kills: int) -> Outcome:
    """The sweep, killed ``kills`` times half way through a trial and resumed each time."""
    import optuna

    log = store.with_suffix(".log")
    started = time.perf_counter()
    proc = start(log, "sweep", str(SPEC), "-q", "--no-smoke", "--store", str(store), *args)
    died: dict[int, int] = {}  # a killed try's number → the epochs it trained
    study = None  # loaded once: a study loaded again every poll would hold SQLite's lock
    while len(died) < kills:
        if proc.poll() is not None:
            raise SystemExit(f"the sweep ended before {kills} kills: {log.read_text()[-2000:]}")
        time.sleep(0.5)
        if study is None and (store / "optuna.db").is_file():
            with contextlib.suppress(KeyError):  # not made yet
                # sweeplab's opening: a sweep creating the tables at this moment
                # makes a plain load_study fail ("UNIQUE constraint failed")
                study = optuna.load_study(
                    study_name=NAME, storage=open_storage(f"sqlite:///{store / 'optuna.db'}")
                )
        victim = None if study is None else first_try_half_way(study, epochs, died)
        if victim is None:
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # what it had reported when it died, and the epoch it was in
        died[victim.number] = own_epochs(study.trials[victim.number]) + 1  # type: ignore[union-attr]
        proc = start(log, "resume", NAME, "-q", "--store", str(store))
    if proc.wait() != 0:
        raise SystemExit(f"the sweep failed: {log.read_text()[-2000:]}")
    seconds = time.perf_counter() - started
    trials = optuna.load_study(study_name=NAME, storage=f"sqlite:///{store / 'optuna.db'}").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    resumed = [
        int(t.user_attrs["sweeplab.resumed_at"])
        for t in complete
        if "sweeplab.resumed_at" in t.user_attrs
    ]
    return Outcome(
        sum(died.get(t.number, own_epochs(t)) for t in trials), seconds, len(complete), resumed
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=300, help="each trial's epochs (~30 s)")
    args = parser.parse_args()
    trials, epochs, kills = (2, 8, 1) if args.tiny else (args.trials, args.epochs, 3)
    variants = [("today", "null"), ("10s", "10s"), ("every epoch", "1")]
    if args.tiny:  # the same code paths: one interrupted variant
        variants = variants[-1:]
    print(f"default MLP on digits, 2 fused restarts, {trials} trials of {epochs} epochs")
    print(f"{kills} kill -9 mid-trial, each followed by `sweeplab resume`")
    with tempfile.TemporaryDirectory() as tmp:
        base = run(Path(tmp, "uninterrupted"), sets(trials, epochs, "null"), epochs, 0)
        print(f"uninterrupted:  {base.epochs:.0f} epochs, {base.seconds:6.1f} s")
        every = run(Path(tmp, "uninterrupted-1"), sets(trials, epochs, "1"), epochs, 0)
        print(
            f"uninterrupted with a checkpoint every epoch: {every.seconds:6.1f} s = "
            f"{every.seconds / base.seconds:.2f}x the wall time without",
            flush=True,
        )
        for label, every in variants:
            got = run(Path(tmp, every), sets(trials, epochs, every), epochs, kills)
            ratio = got.epochs / base.epochs
            verdict = (
                "" if every == "null" else f" ({'met' if ratio <= 1.1 else 'MISSED'}: <= 1.1x)"
            )
            print(
                f"{label + ':':<15} {got.epochs:.0f} epochs = {ratio:.2f}x{verdict}, "
                f"{got.seconds:6.1f} s = {got.seconds / base.seconds:.2f}x wall, "
                f"{got.trials} complete, resumed at epochs {got.resumed or 'none'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
