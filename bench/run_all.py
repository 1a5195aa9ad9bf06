"""Run every benchmark in bench/ and append its output to bench/RESULTS.md.

Each entry records the date, the machine and the library versions, so figures
from different runs are never mixed up. ``--tiny`` runs every script at its tiny size
(``make bench-tiny``, in CI): seconds each, only to find a script that no longer runs;
nothing is appended.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the order: tracking, trial overhead, pruning, storage, ingestion, start-up,
# scaling (distributed.py), the 3-agent bookkeeping figure, local workers, compare on the
# default sweep, then a sweep of 1,000 trials (status, compare and the report at that scale),
# then restarts fused vs one after another (fits, and the default sweep for 3 seeds), then
# several trials in one batched fit (the fixed-work case), then
# a warm-started sweep against cold ones, then what a sweep registers (sweep.final) beside
# the scikit-learn baselines, then `sweeplab serve` under concurrent clients, then kill -9
# and resume from checkpoints, then what system metrics and checkpoints cost, then what
# data augmentation changes on digits, then MNIST- and CIFAR-10-sized data
SCRIPTS = [
    "tracking_overhead.py",
    "trial_overhead.py",
    "pruning.py",
    "storage.py",
    "ingestion.py",
    "startup.py",
    "distributed.py",
    "agents.py",
    "workers.py",
    "compare.py",
    "thousand.py",
    "restarts.py --sweeps",
    "fused_trials.py",
    "fused_sweeps.py",
    "warm_start.py",
    "final_model.py",
    "serve_load.py",
    "resume.py",
    "watch_overhead.py",
    "augment.py",
    "data_scale.py",
]
LIBRARIES = ["torch", "lightning", "optuna", "mlflow", "ray"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="every script at its tiny size")
    tiny = parser.parse_args().tiny
    header = (
        f"\n## {datetime.datetime.now().isoformat(timespec='seconds')}\n\n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; "
        + ", ".join(f"{lib} {version(lib)}" for lib in LIBRARIES)
        + "\n"
    )
    blocks = [header]
    for script in SCRIPTS:
        if tiny:
            script += " --tiny"
            print(f"-- {script}", flush=True)
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, str(HERE / script.split()[0]), *script.split()[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        text = "\n".join(line for line in out.stdout.splitlines() if line.strip())
        print(text)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"bench/{script} failed (exit {out.returncode})")
        if tiny:
            print(f"-- {script}: ran in {time.perf_counter() - started:.0f} s", flush=True)
            continue
        blocks.append(f"\n### {script}\n\n```\n{text}\n```\n")
    if tiny:
        return
    with (HERE / "RESULTS.md").open("a", encoding="utf-8") as f:
        f.writelines(blocks)


if __name__ == "__main__":
    main()
