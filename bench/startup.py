"""Start-up: wall time of `sweeplab --help`, `sweeplab sweep --help` and `sweeplab validate`.

Each command runs ``--repeats`` times as a fresh process (the console script the
install made); the median is compared with the 0.5 s target. A bare
`python -c pass` is the floor any Python command pays.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5


def sweeplab() -> list[str]:
    script = Path(sys.executable).with_name("sweeplab")
    if script.exists():
        return [str(script)]
    found = shutil.which("sweeplab")
    return [found] if found else [sys.executable, "-m", "sweeplab"]


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.repeats = 1
    cli = sweeplab()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "sweeplab --help": [*cli, "--help"],
        "sweeplab sweep --help": [*cli, "sweep", "--help"],
        "sweeplab validate": [*cli, "validate", "experiments/mlp_digits.yaml"],
    }
    print(f"start-up: median of {args.repeats} fresh processes")
    missed = []
    for label, command in commands.items():
        seconds = median_seconds(command, args.repeats)
        print(f"  {label:24s} {seconds:6.3f} s")
        if label.startswith("sweeplab") and seconds > TARGET_S:
            missed.append(label)
    verdict = "met" if not missed else "MISSED by " + ", ".join(missed)
    print(f"target: every sweeplab command <= {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
