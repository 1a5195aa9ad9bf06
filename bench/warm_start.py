"""Warm start: a 24-trial sweep warm-started from an earlier 24-trial sweep, against a
cold 48-trial sweep and a cold 24-trial one, side by side in one run.

All on the default spec (experiments/mlp_digits.yaml: its space, TPE, hyperband, 2
restarts), one store:

    earlier    24 trials, sweep.seed 0: the sweep the warm one starts from
    warm 24    24 new trials, sweep.seed 1, sweep.warm_start: [earlier] (its 24 finished
               trials go into the new study as prior trials, which TPE learns from)
    cold 48    48 trials, sweep.seed 1, no warm start
    cold 24    24 trials, sweep.seed 1, no warm start

Printed: the best validation value (the objective, val_acc) after each new trial of
each sweep (prior trials are not new trials: `Sweep.trials` leaves them out), and in
how many new trials the warm sweep reached the cold 48-trial sweep's best. Target: in
half of the cold sweep's trials (<= 24).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tiny import TINY_HELP, TINY_SETS  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.logs import quiet_libraries
from sweeplab.search import Sweep, create_sweep
from sweeplab.search.states import TrialState
from sweeplab.spec import load_spec
from sweeplab.store import Store

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"


def run(store: Store, name: str, trials: int, seed: int, *extra: str) -> tuple[Sweep, float]:
    """The sweep ``name`` run to its end, and its seconds."""
    overrides = [f"sweep.trials={trials}", f"sweep.seed={seed}", "tracking.register_as=null"]
    exp = load_spec(SPEC, [*overrides, *extra])
    started = time.perf_counter()
    sweep = create_sweep(exp, store=store, name=name)
    sweep.optimize()
    return sweep, time.perf_counter() - started


def best_after_each(sweep: Sweep, maximize: bool) -> list[float | None]:
    """The best value among the sweep's own trials after each of them (by number)."""
    best: float | None = None
    out: list[float | None] = []
    for trial in sorted(sweep.trials, key=lambda t: t.number):
        value = trial.values[0] if trial.state is TrialState.COMPLETE and trial.values else None
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best = value
        out.append(best)
    return out


def reached(curve: list[float | None], target: float, maximize: bool) -> int | None:
    """The 1-based new trial at which ``curve`` first reached ``target``."""
    for i, best in enumerate(curve, start=1):
        if best is not None and (best >= target if maximize else best <= target):
            return i
    return None


def _value(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="of the earlier and warm sweeps")
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    n = 2 if args.tiny else args.trials
    smaller = TINY_SETS[1:] if args.tiny else []  # the trials are set here
    quiet_libraries(training=True)
    maximize = load_spec(SPEC).objective.mode == "max"
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.resolve(Path(tmp))
        _, earlier_s = run(store, "earlier", n, 0, *smaller)
        warm, warm_s = run(store, "warm", n, 1, "sweep.warm_start=[earlier]", *smaller)
        cold2, cold2_s = run(store, "cold-2n", 2 * n, 1, *smaller)
        cold, cold_s = run(store, "cold-n", n, 1, *smaller)
        curves = {
            f"warm {n}": best_after_each(warm, maximize),
            f"cold {2 * n}": best_after_each(cold2, maximize),
            f"cold {n}": best_after_each(cold, maximize),
        }
        summary = warm.warm_start
        priors = len(warm.prior_trials)
    print(f"warm start on the default spec: {n} + {n} trials against {2 * n} and {n}, one run")
    print(f"  {summary}; the warm sweep holds {priors} prior trials")
    seconds = {"earlier": earlier_s, "warm": warm_s, "cold 2n": cold2_s, "cold n": cold_s}
    print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print("  best val value after each new trial:")
    print("  trial " + "".join(f"{label:>10s}" for label in curves))
    for i in range(2 * n):
        cells = [c[i] if i < len(c) else None for c in curves.values()]
        text = "".join(f"{'' if v is None else f'{v:.4f}':>10s}" for v in cells)
        print(f"  {i + 1:5d} {text}")
    target = curves[f"cold {2 * n}"][-1]
    if target is None:
        raise SystemExit(f"the cold {2 * n}-trial sweep has no complete trial")
    cold_at = reached(curves[f"cold {2 * n}"], target, maximize)
    warm_at = reached(curves[f"warm {n}"], target, maximize)
    cold_n_best = curves[f"cold {n}"][-1]
    warm_best = curves[f"warm {n}"][-1]
    print(f"  cold {2 * n}: best {target:.4f}, first reached at trial {cold_at}")
    print(f"  cold {n}: best {_value(cold_n_best)}; warm {n}: best {_value(warm_best)}")
    half = 2 * n // 2
    if warm_at is None:
        print(
            f"target: warm reaches the cold {2 * n}-trial best in <= {half} new trials: "
            f"MISSED (not reached in its {n})"
        )
    else:
        verdict = "met" if warm_at <= half else "MISSED"
        print(
            f"target: warm reaches the cold {2 * n}-trial best in <= {half} new trials: "
            f"{verdict} (at new trial {warm_at}; the cold sweep at trial {cold_at})"
        )


if __name__ == "__main__":
    main()
