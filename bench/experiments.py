"""Run the shipped experiments and print their quality figures (the README's table).

    python bench/experiments.py [NAME ...]     # default: all of them, a few minutes each

Each experiment runs as a user would, through the CLI, on a fresh store in a
temporary folder; the figures are read back from the Optuna study and the
MLflow runs. Slow: not part of `make test` (see `make test-slow` for the asserted
thresholds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPLAB = [sys.executable, "-m", "sweeplab"]


def run(args: list[str], store: Path) -> float:
    started = time.monotonic()
    subprocess.run([*SWEEPLAB, *args, "--store", str(store)], check=True, cwd=ROOT)
    return time.monotonic() - started


def trials(store: Path, name: str) -> list[dict[str, object]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{store / 'optuna.db'}")
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            **{k: v for k, v in t.user_attrs.items() if k.startswith("test_")},
        }
        for t in study.trials
    ]


EXPERIMENTS = [
    "cnn_digits",
    "cnn_digits_augmented",
    "recurrent_digits",
    "transformer_digits",
    "lstm_sunspots",
    "autoencoder_digits",
    "gan_digits",
    "transfer_digits",
    "custom_digits",
]


def main(names: list[str]) -> None:
    for name in names or EXPERIMENTS:
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp, "store")
            seconds = 0.0
            if name == "transfer_digits":
                seconds += run(
                    ["train", "experiments/cnn_digits_0to4.yaml", "--register", "digits-0to4"],
                    store,
                )
            seconds += run(["sweep", f"experiments/{name}.yaml", "--quiet"], store)
            study = name.replace("_", "-")
            rows = trials(store, study)
            print(json.dumps({"experiment": name, "seconds": round(seconds), "trials": rows}))
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
