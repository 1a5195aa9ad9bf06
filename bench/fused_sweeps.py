"""Several trials in one batched fit (issue 31): whole sweeps, side by side in one run.

1. The default spec (experiments/mlp_digits.yaml: 24 trials x 2 restarts, TPE,
   hyperband pruning, early stopping) as ``sweeplab sweep`` runs it today
   (``sweep.fuse_trials: 1``) and with ``fuse_trials`` 4, 8, 16 and auto, on
   ``sweep.seed`` 0, 1 and 2, each the whole command on a fresh store: wall time, trials
   per hour, fits and member-epochs run, the best validation value, and the registered
   model's test accuracy. Each fused setting also runs with ``--workers 2`` (this
   machine's two cores: what a user would choose here), and so does today's spec, beside
   it, to show what the workers give without fusing. Today's is the default command
   (one worker). Targets: the best fused setting's wall <= 0.5x today's on every seed; its
   registered test accuracy >= 0.97 on every seed, and its mean no lower than today's
   minus 0.005.
2. The same space as a hand-written Optuna + Lightning + MLFlowLogger loop with
   optuna-integration's pruning callback (20 trials, TPE, median pruner, one fit a
   trial, the data as tensors), what a user writes without sweeplab: trials per hour of
   sweeplab's best setting (one worker, 2 restarts a trial: twice the loop's fits) ÷ the
   loop's. Target >= 5x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"
WALL_TARGET, ACC_FLOOR, ACC_SLACK, LOOP_TARGET = 0.5, 0.97, 0.005, 5.0


# a sweep.fuse_trials value (a number, or "auto") and --workers; "8x2" on the command line
Setting = tuple[int | str, int]
TODAY: Setting = (1, 1)
DEFAULT_SETTINGS = ("1", "4", "8", "16", "auto", "1x2", "8x2", "16x2", "autox2")


def _setting(value: str) -> Setting:
    fuse, _, workers = value.partition("x")
    return (fuse if fuse == "auto" else int(fuse), int(workers or 1))


def _label(setting: Setting) -> str:
    fuse, workers = setting
    return f"{fuse}" if workers == 1 else f"{fuse}, {workers} workers"


def sweep(
    store: Path, setting: Setting, seed: int, extra: list[str], restarts: int = 2
) -> dict[str, float]:
    """One ``sweeplab sweep`` of the default spec: its figures."""
    fuse, workers = setting
    sets = [f"sweep.fuse_trials={fuse}", f"sweep.seed={seed}", *extra]
    sets += [] if restarts == 2 else [f"sweep.restarts={restarts}"]
    command = [sys.executable, "-m", "sweeplab", "sweep", str(SPEC), "--store", str(store)]
    command += ["--no-smoke", "-q", "--workers", str(workers)]
    command += [a for s in sets for a in ("--set", s)]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return {"wall": wall, **_figures(store, restarts)}


def _figures(store: Path, restarts: int) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{store / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = [t for t in study.trials if t.state.is_finished()]
    epochs = sum(
        int(t.user_attrs.get("epochs", len(t.intermediate_values))) * restarts for t in trials
    )
    registered = study.user_attrs.get("sweeplab.registered_score") or {}
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {
        "trial_phase": (max(ends) - min(starts)).total_seconds(),
        "trials": len(trials),
        "fits": len(trials) * restarts,
        "member_epochs": epochs,
        "best_val": study.best_value,
        "test_acc": float(registered.get("value", float("nan"))),
    }


# --------------------------------------------------------------- the hand-written loop


def handwritten_loop(folder: Path, trials: int, tiny: bool) -> dict[str, float]:
    """What a user writes: Optuna's TPE and median pruner, a LightningModule, MLflow's
    Lightning logger and optuna-integration's pruning callback, over the default space."""
    import lightning.pytorch as pl
    import numpy as np
    import optuna
    import torch
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import MLFlowLogger
    from optuna_integration import PyTorchLightningPruningCallback
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = load_digits(return_X_y=True)
    x_rest, _, y_rest, _ = train_test_split(x, y, test_size=0.15, random_state=0, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.15 / 0.85, random_state=0, stratify=y_rest
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8

    def tensors(a: Any, b: Any) -> TensorDataset:
        return TensorDataset(torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b))

    train_set, val_set = tensors(x_train, y_train), tensors(x_val, y_val)
    activations = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}

    class Net(pl.LightningModule):
        def __init__(self, p: dict[str, Any]) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            for a, b in ((64, 256), (256, 128)):
                layers.append(nn.Linear(a, b))
                if p["norm"] == "batch":
                    layers.append(nn.BatchNorm1d(b))
                layers += [activations[p["activation"]](), nn.Dropout(p["dropout"])]
            self.net, self.p = nn.Sequential(*layers, nn.Linear(128, 10)), p

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            out = self.net(batch[0])
            self.log("val_loss", nn.functional.cross_entropy(out, batch[1]))
            self.log("val_acc", (out.argmax(1) == batch[1]).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(
                self.parameters(), lr=self.p["lr"], weight_decay=self.p["weight_decay"]
            )

    def objective(trial: optuna.Trial) -> float:
        p = {
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "max_epochs": 2 if tiny else trial.suggest_int("max_epochs", 20, 60),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "activation": trial.suggest_categorical("activation", list(activations)),
            "norm": trial.suggest_categorical("norm", ["none", "batch"]),
        }
        model = Net(p)
        logger = MLFlowLogger("loop", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
        logger.log_hyperparams(p)
        trainer = pl.Trainer(
            max_epochs=p["max_epochs"],
            logger=logger,
            callbacks=[
                PyTorchLightningPruningCallback(trial, monitor="val_acc"),
                EarlyStopping("val_loss", patience=10),
            ],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(
            model,
            DataLoader(train_set, batch_size=p["batch_size"], shuffle=True),
            DataLoader(val_set, batch_size=512),
        )
        return float(trainer.callback_metrics["val_acc"])

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - started
    return {"wall": wall, "trials": float(trials), "best_val": float(np.float64(study.best_value))}


def _loop_in_fresh_process(folder: Path, trials: int, tiny: bool) -> dict[str, float]:
    import logging

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--loop", str(folder), str(trials), *(["--tiny"] * tiny)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the hand-written loop failed:\n{out.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["wall"] = time.perf_counter() - started  # start-up included, as for sweeplab
    return figures


# ------------------------------------------------------------------------ the report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--fuse",
        type=_setting,
        nargs="+",
        default=[_setting(v) for v in DEFAULT_SETTINGS],
        help="settings: sweep.fuse_trials, and xN for --workers N (8x2)",
    )
    parser.add_argument(
        "--backend",
        choices=["optuna", "ray"],
        default="optuna",
        help="ray: each fused batch in a Ray Tune trial (settings without xN)",
    )
    parser.add_argument("--loop", nargs=2, metavar=("FOLDER", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        figures = handwritten_loop(Path(args.loop[0]), int(args.loop[1]), args.tiny)
        print(json.dumps(figures))
        return
    extra = [s for s in TINY_SWEEP if s != "--set"] if args.tiny else []
    extra += [f"sweep.backend={args.backend}"] if args.backend != "optuna" else []
    tiny = [_setting(v) for v in ("1", "2", "auto", "2x2")]
    seeds, settings = ([0], tiny) if args.tiny else (args.seeds, args.fuse)
    if TODAY not in settings:
        settings = [TODAY, *settings]
    rows: dict[tuple[Setting, int], dict[str, float]] = {}
    print(
        f"{'fuse_trials':>20} {'seed':>4} {'wall s':>7} {'trials/h':>9} {'fits':>5} "
        f"{'member-epochs':>13} {'best val':>8} {'test acc':>8} {'wall ÷ today':>12} "
        f"{'trials s':>8} {'÷ today':>7}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for setting in settings:
                store = Path(tmp, f"f{setting[0]}w{setting[1]}s{seed}")
                r = rows[setting, seed] = sweep(store, setting, seed, extra)
                per_hour = r["trials"] * 3600 / r["wall"]
                print(
                    f"{_label(setting):>20} {seed:>4} {r['wall']:>7.1f} {per_hour:>9.0f} "
                    f"{r['fits']:>5.0f} {r['member_epochs']:>13.0f} {r['best_val']:>8.4f} "
                    f"{r['test_acc']:>8.4f} {r['wall'] / rows[TODAY, seed]['wall']:>12.2f} "
                    f"{r['trial_phase']:>8.1f} "
                    f"{r['trial_phase'] / rows[TODAY, seed]['trial_phase']:>7.2f}",
                    flush=True,
                )
        loop = _loop_in_fresh_process(Path(tmp), 2 if args.tiny else 20, args.tiny)
        best = _best(rows, seeds, [s for s in settings if s[0] != 1])
        # as the loop: one fit a trial (sweeplab's default spec trains 2)
        alike = sweep(Path(tmp, "one-fit"), best, seeds[0], extra, restarts=1)
    _verdicts(rows, seeds, best, loop, alike)


def _best(
    rows: dict[tuple[Setting, int], dict[str, float]], seeds: list[int], fused: list[Setting]
) -> Setting:
    """The fused setting with the lowest mean wall time ÷ today's."""

    def mean_ratio(setting: Setting) -> float:
        return statistics.fmean(rows[setting, s]["wall"] / rows[TODAY, s]["wall"] for s in seeds)

    return min(fused, key=mean_ratio)


def _verdicts(
    rows: dict[tuple[Setting, int], dict[str, float]],
    seeds: list[int],
    best: Setting,
    loop: dict[str, float],
    alike: dict[str, float],
) -> None:
    ratios = [rows[best, s]["wall"] / rows[TODAY, s]["wall"] for s in seeds]
    accs = [rows[best, s]["test_acc"] for s in seeds]
    today = statistics.fmean(rows[TODAY, s]["test_acc"] for s in seeds)
    wall_met = all(r <= WALL_TARGET for r in ratios)
    acc_met = min(accs) >= ACC_FLOOR and statistics.fmean(accs) >= today - ACC_SLACK
    print(
        f"\nbest setting: fuse_trials {_label(best)}; wall ÷ today per seed "
        f"{', '.join(f'{r:.2f}' for r in ratios)} (target <= {WALL_TARGET} on every seed: "
        f"{'met' if wall_met else 'MISSED'})"
    )
    _workers_alone(rows, seeds, best)
    print(
        f"registered test accuracy per seed {', '.join(f'{a:.4f}' for a in accs)}, mean "
        f"{statistics.fmean(accs):.4f} against today's {today:.4f} (target >= {ACC_FLOOR} on "
        f"every seed and mean >= today's - {ACC_SLACK}: {'met' if acc_met else 'MISSED'})"
    )
    per_hour = statistics.fmean(
        rows[best, s]["trials"] * 3600 / rows[best, s]["wall"] for s in seeds
    )
    loop_per_hour = loop["trials"] * 3600 / loop["wall"]
    ratio = per_hour / loop_per_hour
    print(
        f"hand-written Optuna + Lightning + MLFlowLogger loop: {loop['trials']:.0f} trials in "
        f"{loop['wall']:.1f} s, {loop_per_hour:.0f} trials/h "
        f"(best val_acc {loop['best_val']:.4f}); "
        f"sweeplab fuse_trials {_label(best)}: {per_hour:.0f} trials/h = {ratio:.2f}x the loop "
        f"(target >= {LOOP_TARGET}: {'met' if ratio >= LOOP_TARGET else 'MISSED'})"
    )
    one_fit = alike["trials"] * 3600 / alike["wall"]
    print(
        f"sweeplab fuse_trials {_label(best)} with one fit a trial (sweep.restarts 1, as the "
        f"loop), seed {min(s for s in seeds)}: {alike['wall']:.1f} s, {one_fit:.0f} trials/h = "
        f"{one_fit / loop_per_hour:.2f}x the loop (test acc {alike['test_acc']:.4f})"
    )
    trial_share = statistics.fmean(
        rows[best, s]["trial_phase"] / rows[best, s]["wall"] for s in seeds
    )
    print(
        f"of a fused sweep's wall, {trial_share:.0%} is its trials (first start to last end); "
        "the rest is start-up, the study and parent run, and the end: plots, baselines, "
        "the registered model"
    )


def _workers_alone(
    rows: dict[tuple[Setting, int], dict[str, float]], seeds: list[int], best: Setting
) -> None:
    """What the best setting's workers give without fusing: today's spec with as many."""
    alone: Setting = (1, best[1])
    if best[1] == 1 or (alone, seeds[0]) not in rows:
        return
    ratios = [rows[alone, s]["wall"] / rows[TODAY, s]["wall"] for s in seeds]
    fused = [rows[best, s]["wall"] / rows[alone, s]["wall"] for s in seeds]
    print(
        f"  of which the workers alone (fuse_trials 1, {best[1]} workers): wall ÷ today per "
        f"seed {', '.join(f'{r:.2f}' for r in ratios)}; fusing on top of them: "
        f"{', '.join(f'{r:.2f}' for r in fused)}"
    )


if __name__ == "__main__":
    main()
