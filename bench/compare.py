"""compare on the default sweep: the command a user runs after `make sweep`, timed.

The default sweep (experiments/mlp_digits.yaml, 24 trials) runs once; then, each a fresh
process as a user runs them:

    compare            sweeplab compare mlp-digits (the sweep's end drew its plots and
                       report; they are current, so only the table is made)
    compare --redraw   every plot and the report drawn again

Target (2 cores): compare on the default sweep <= 5 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"


def timed(*args: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"sweeplab {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    smaller = TINY_SWEEP if args.tiny else []
    with tempfile.TemporaryDirectory() as tmp:
        store = ["--store", tmp]
        sweep = timed("sweep", str(SPEC), "-q", *store, *smaller)
        current = [timed("compare", "mlp-digits", *store) for _ in range(2)]
        redraw = [timed("compare", "mlp-digits", "--redraw", *store) for _ in range(2)]
    print(f"default sweep ({'tiny' if args.tiny else '24 trials'}): {sweep:.1f} s")
    worst = max(current)
    print(f"compare:          {current[0]:.2f} s, {current[1]:.2f} s", end=" ")
    print(f"({'met' if worst <= 5 else 'MISSED'}: <= 5 s, both runs)")
    print(f"compare --redraw: {redraw[0]:.2f} s, {redraw[1]:.2f} s")


if __name__ == "__main__":
    main()
