"""A sweep of 1,000 tiny trials: bookkeeping per trial, then status, compare and the report.

A real sweep on the embedded store (SQLite and local artifacts), in this process:
iris, an MLP of 8 units, 1 epoch per trial, 3 parameters drawn at random. Then, as a
user runs them (each a fresh process):

    status             sweeplab status NAME
    compare            sweeplab compare NAME (its plots and report are current: the
                       sweep's end drew them)
    compare --redraw   the same, drawing every plot and the report again
    report             report.html opened in headless Chromium, until every figure is
                       drawn and the table holds every trial

Bookkeeping per trial = (first trial's start to last trial's end, less the seconds
spent inside ``fit``, which each trial records as its ``fit_seconds``) / trials, less
Optuna's own per trial: a bare ``study.optimize`` of an objective that only draws the
same 3 parameters, 1,000 trials on SQLite, in this run.

Targets (2 cores): bookkeeping <= 100 ms per trial beyond Optuna's; status <= 2 s;
compare <= 10 s; the report under 5 MB, opening with every trial in its table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import timed  # bench/compare.py: this script's folder is on sys.path
from tiny import TINY_HELP

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 1000
NAME = "thousand"
SPACE: dict[str, Any] = {
    "train.lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
SPEC: dict[str, Any] = {
    "name": NAME,
    "model": {"arch": "mlp", "hidden": [8]},
    "data": {"dataset": "iris"},
    "train": {"max_epochs": 1},
    "objective": {"metric": "val_acc", "mode": "max"},
    "search_space": SPACE,
    "sweep": {"trials": TRIALS, "sampler": "random", "seed": 0},
    "tracking": {"experiment": NAME},
}


def bare_optuna(folder: Path, trials: int) -> float:
    """Optuna's own seconds per trial: the same draws, an objective that does nothing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'bare.db'}", direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("train.lr", 1e-3, 0.3, log=True)
        trial.suggest_categorical("train.batch_size", [16, 32, 64])
        return trial.suggest_float("model.dropout", 0.0, 0.5)

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - started) / trials


def sweep(folder: Path, trials: int) -> tuple[float, float, float]:
    """The sweep: (seconds from the first trial's start to the last one's end, seconds
    inside fit, seconds of the sweep's end after the last trial)."""
    import optuna

    from sweeplab.logs import quiet_libraries
    from sweeplab.search import run_sweep
    from sweeplab.search.keys import ATTR_FIT_SECONDS
    from sweeplab.spec import spec_from_dict
    from sweeplab.store import Store

    quiet_libraries(training=True)
    store = Store.resolve(folder / "store")
    spec = {**SPEC, "sweep": {**SPEC["sweep"], "trials": trials}}
    run_sweep(spec_from_dict(spec), store, name=NAME)
    ended = time.time()
    ran = optuna.load_study(study_name=NAME, storage=store.storage_url).trials
    first = min(t.datetime_start for t in ran if t.datetime_start)
    last = max(t.datetime_complete for t in ran if t.datetime_complete)
    inside = sum(float(t.user_attrs[ATTR_FIT_SECONDS]) for t in ran)
    return (last - first).total_seconds(), inside, ended - last.timestamp()


def open_report(path: Path, folder: Path) -> tuple[float, int, int] | None:
    """Seconds until headless Chromium drew the report, its figures, its table rows;
    None where no Chromium is installed."""
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from tests.helpers import chromium

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return None
    driver = chromium(folder / "chromium", window="800,600")
    try:
        started = time.perf_counter()
        driver.get(path.as_uri())
        body = driver.find_element(By.TAG_NAME, "body")
        status = driver.find_element(By.ID, "status")
        WebDriverWait(driver, 120).until(lambda d: body.get_attribute("data-drawn") or status.text)
        seconds = time.perf_counter() - started
        if status.text:
            raise SystemExit(f"the report did not draw: {status.text}")
        drawn = int(body.get_attribute("data-drawn") or 0)
        rows = len(driver.find_elements(By.CSS_SELECTOR, "tr[data-trial]"))
        return seconds, drawn, rows
    finally:
        driver.quit()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    trials = 20 if args.tiny else args.trials
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        optuna_per_trial = bare_optuna(folder, trials)
        span, inside, end = sweep(folder, trials)
        store = ["--store", str(folder / "store")]
        status = timed("status", NAME, *store)
        compare = timed("compare", NAME, *store)
        redraw = timed("compare", NAME, "--redraw", *store)
        report = folder / "store" / "compare" / NAME / "report.html"
        size = report.stat().st_size
        drew = open_report(report, folder)
    ours = (span - inside) / trials
    extra = (ours - optuna_per_trial) * 1000
    print(f"{trials} trials of 1 epoch (iris, MLP [8]), embedded store, 1 process")
    print(f"sweep: {span:.1f} s from the first trial's start to the last one's end")
    print(f"       {inside:.1f} s of it inside fit, {inside / trials * 1000:.1f} ms per trial")
    print(f"       the sweep's end (plots and report): {end:.1f} s")
    print(f"bookkeeping per trial: sweeplab {ours * 1000:.1f} ms (Optuna's part included)")
    print(f"                       Optuna alone {optuna_per_trial * 1000:.1f} ms")
    print(
        f"                       beyond Optuna's {extra:.1f} ms ({verdict(extra <= 100)}: <= 100)"
    )
    print(f"status: {status:.2f} s ({verdict(status <= 2)}: <= 2 s)")
    print(f"compare: {compare:.2f} s ({verdict(compare <= 10)}: <= 10 s)")
    print(f"compare --redraw: {redraw:.2f} s ({verdict(redraw <= 10)}: <= 10 s)")
    print(f"report: {size / 1e6:.2f} MB ({verdict(size < 5e6)}: < 5 MB); in headless Chromium")
    if drew is None:
        print("        not opened: no Chromium on this machine (.ci/run installs it)")
        return
    opened, drawn, rows = drew
    print(
        f"        drawn in {opened:.1f} s: {drawn} figures, {rows} of {trials} trials in its table"
    )
    print(f"        ({verdict(rows == trials)}: every trial)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
