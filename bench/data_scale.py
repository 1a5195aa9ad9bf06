"""Data at real sizes: MNIST-sized and CIFAR-10-sized sets, written here in their
published formats (IDX files; CIFAR-10's python batches), trained by sweeplab and by a
plain PyTorch loop.

The images are drawn from scikit-learn's 8×8 digits (no network here): each one scaled
up (×3 for 28×28, ×4 for 32×32 in three tinted channels), placed at a random offset,
its intensity varied, and noise added, so the sets have the real sizes, formats and
bytes, and something to learn.

1. Per epoch, each in a fresh process: ``sweeplab``'s ``fit`` (its DataModule over the
   split, images held as uint8 and standardized per batch) against a plain PyTorch
   loop on the same network (sweeplab's own ``net``), with the data as standardized
   float32 tensors and a DataLoader, as a user writes it; both validate each epoch and
   keep the best epoch's weights. Printed: seconds per epoch, training samples per
   second, and the process's peak memory (RSS) above what it held after its imports,
   against the data's size in uint8. Targets: sweeplab ≤ 1.2× the plain loop per
   epoch; peak memory ≤ 2× the data's uint8 size plus the model (its weights,
   gradients and Adam's two moments).
2. A 24-trial sweep (``experiments/mlp_digits.yaml``'s spec and search space) on a
   10,000-image subset of the MNIST-sized set (``data.limit``): wall time, the best
   validation value and the registered model's test accuracy.
3. An image folder of 48×48 RGB PNGs twice the size of a memory budget
   (``--budget-mb``, 256 MB: 77,672 images, 512 MB of pixels): one epoch of an MLP with
   the folder read into memory, and streamed from disk by DataLoader worker processes
   (``data.memory_mb`` set to the budget); target: the streamed fit's memory (training
   process and its workers, see ``streamed_folder.py``) under the budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import streamed_folder  # bench/streamed_folder.py
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("mnist", "mlp"), ("mnist", "cnn"), ("cifar10", "cnn")]
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"arch": "mlp", "hidden": [256, 128]},
    "cnn": {"arch": "cnn", "channels": [16, 32], "norm": "batch", "head": [64]},
}


# ------------------------------------------------------------------------------ data


def _digit_images(n: int, side: int, scale: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images side×side of the digits scaled by ``scale``, shifted and noisy."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits.images), n)
    big = np.kron(digits.images[pick] / 16.0, np.ones((scale, scale)))  # (n, 8s, 8s)
    room = side - 8 * scale
    images = np.zeros((n, side, side))
    offsets = rng.integers(0, room + 1, (n, 2))
    for dy in range(room + 1):  # one slice per offset: a vectorized placement
        for dx in range(room + 1):
            at = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            images[at, dy : dy + 8 * scale, dx : dx + 8 * scale] = big[at]
    images *= rng.uniform(0.6, 1.0, (n, 1, 1)) * 255
    images += rng.normal(0, 20, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8), digits.target[pick].astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = _digit_images(n, 28, 3, seed)
        _write_idx(folder / f"{part}-images-idx3-ubyte", images)
        _write_idx(folder / f"{part}-labels-idx1-ubyte", labels)
    return folder


def write_cifar(folder: Path, n_train: int, n_test: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sizes = [n_train // 5] * 5 + [n_test]
    for i, (name, n) in enumerate(zip(names, sizes, strict=True)):
        gray, labels = _digit_images(n, 32, 4, seed=10 + i)
        tint = np.random.default_rng(i).uniform(0.5, 1.0, (n, 3, 1, 1))
        rgb = (gray[:, None].astype(np.float64) * tint).astype(np.uint8)  # (n, 3, 32, 32)
        batch = {b"data": rgb.reshape(n, -1), b"labels": labels.astype(int).tolist()}
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh)
    return folder


# ------------------------------------------------------------------- one measurement


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """The process's peak resident memory since ``_reset_peak`` (Linux's VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Set the peak back to the current resident memory (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def _spec(dataset: str, arch: str, folder: str, epochs: int) -> Any:
    from sweeplab.spec import spec_from_dict

    return spec_from_dict(
        {
            "name": "scale",
            "model": MODELS[arch],
            "data": {"dataset": dataset, "path": folder or None},
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "max_epochs": epochs},
            "objective": {"metric": "val_acc", "mode": "max"},
        }
    )


def measure(way: str, dataset: str, arch: str, folder: str, epochs: int) -> dict[str, float]:
    """One way's training in this process: seconds, memory, accuracy."""
    import torch

    from sweeplab.data.split import split
    from sweeplab.logs import quiet_libraries
    from sweeplab.training.fit import fit, prepare

    quiet_libraries()
    fit(_spec("digits", arch, "", 1), test=False)  # every import a fit makes, before the base
    gc.collect()
    base = _rss_mb()
    _reset_peak()
    torch.manual_seed(0)
    exp = _spec(dataset, arch, folder, epochs)
    s = split(exp.data)
    _, module = prepare(exp, 0, 0, None)
    data_mb = (s.x_train.nbytes + s.x_val.nbytes + s.x_test.nbytes) / 2**20
    if s.x_train.dtype != np.uint8:
        data_mb /= 4
    params = sum(p.numel() for p in module.parameters())
    started = time.perf_counter()
    if way == "plain":
        accuracy = plain_loop(module.net, s, epochs)
    else:
        accuracy = float(fit(exp, test=False).value)
    seconds = time.perf_counter() - started
    memory = _peak_mb() - base
    return {
        "s_per_epoch": seconds / epochs,
        "samples_per_s": len(s.x_train) * epochs / seconds,
        "memory_mb": memory,
        "data_mb": data_mb,
        # weights, gradients, Adam's two moments, and a step's activations
        "model_mb": params * 16 / 2**20 + _step_in_fresh_process(dataset, arch, folder),
        "val_acc": accuracy,
    }


def step_memory_mb(dataset: str, arch: str, folder: str) -> float:
    """The peak memory of one training step (batch 128) and one validation batch (as many
    rows as sweeplab evaluates at once for this model) of the model, above what the
    process holds with its data loaded: the activations and their gradients. Run in a
    fresh process of its own: after a fit, the allocator's cached memory (glibc raises
    its mmap threshold as large blocks are freed) would hide the step's needs."""
    import torch

    from sweeplab.data.split import split
    from sweeplab.training.fit import eval_batch_size, prepare

    exp = _spec(dataset, arch, folder, 1)
    s = split(exp.data)
    _, module = prepare(exp, 0, 0, None)
    net, eval_rows = module.net, eval_batch_size(exp)
    gc.collect()
    before = _rss_mb()
    _reset_peak()
    x = torch.as_tensor(s.standardized(s.x_train[:128]))
    net.train()
    torch.nn.functional.cross_entropy(net(x), torch.as_tensor(s.y_train[:128])).backward()
    with torch.no_grad():
        net.eval()(torch.as_tensor(s.standardized(s.x_val[:eval_rows])))
    return _peak_mb() - before


def plain_loop(net: Any, s: Any, epochs: int) -> float:
    """What a user writes: the data as standardized float32 tensors, a DataLoader, Adam;
    validation each epoch, the best epoch's weights kept. Returns the best val accuracy."""
    import copy

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.as_tensor(s.standardized(x)), torch.as_tensor(y))

    train = DataLoader(tensors(s.x_train, s.y_train), batch_size=128, shuffle=True)
    val = DataLoader(tensors(s.x_val, s.y_val), batch_size=512)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    best, kept = -1.0, None
    for _ in range(epochs):
        net.train()
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(net(x), y).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            correct = sum(float((net(x).argmax(1) == y).sum()) for x, y in val)
        accuracy = correct / len(s.x_val)
        if accuracy > best:
            best, kept = accuracy, copy.deepcopy(net.state_dict())
    net.load_state_dict(kept)
    return best


# -------------------------------------------------------------------------- the runs


def _step_in_fresh_process(dataset: str, arch: str, folder: str) -> float:
    return float(_in_fresh_process("step", dataset, arch, folder)["step_mb"])


def _in_fresh_process(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"data_scale.py --measure {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def epochs_side_by_side(
    folders: dict[str, Path], epochs: dict[str, int], cases: list[tuple[str, str]]
) -> None:
    print(
        f"{'case':<14} {'way':<9} {'s/epoch':>8} {'samples/s':>10} {'memory MB':>10} "
        f"{'data MB':>8} {'model MB':>9} {'val_acc':>8}"
    )
    for dataset, arch in cases:
        row = {}
        for way in ("plain", "sweeplab"):
            args = (way, dataset, arch, str(folders[dataset]), str(epochs[arch]))
            row[way] = r = _in_fresh_process(*args)
            print(
                f"{dataset + ' ' + arch:<14} {way:<9} {r['s_per_epoch']:>8.2f} "
                f"{r['samples_per_s']:>10.0f} {r['memory_mb']:>10.0f} {r['data_mb']:>8.1f} "
                f"{r['model_mb']:>9.1f} {r['val_acc']:>8.4f}",
                flush=True,
            )
        ratio = row["sweeplab"]["s_per_epoch"] / row["plain"]["s_per_epoch"]
        mine = row["sweeplab"]
        bound = 2 * mine["data_mb"] + mine["model_mb"]
        print(
            f"  per epoch: sweeplab {ratio:.2f}x the plain loop (target <= 1.2x: "
            f"{'met' if ratio <= 1.2 else 'MISSED'}); memory {mine['memory_mb']:.0f} MB "
            f"(target <= 2 x data + model = {bound:.0f} MB: "
            f"{'met' if mine['memory_mb'] <= bound else 'MISSED'}; the plain loop "
            f"{row['plain']['memory_mb']:.0f} MB)",
            flush=True,
        )


def sweep_on_a_subset(folder: Path, limit: int, tiny: bool) -> None:
    sets = [
        "data.dataset=mnist",
        f"data.path={folder}",
        f"data.limit={limit}",
        "tracking.baselines=false",
    ]
    if tiny:
        sets += ["sweep.trials=2", "search_space.train.max_epochs=null", "train.max_epochs=1"]
    with tempfile.TemporaryDirectory() as store:
        args = [
            sys.executable,
            "-m",
            "sweeplab",
            "sweep",
            str(ROOT / "experiments" / "mlp_digits.yaml"),
        ]
        args += [a for s in sets for a in ("--set", s)]
        args += ["--store", store, "-q", "--name", "scale"]
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        shown = subprocess.run(
            [sys.executable, "-m", "sweeplab", "status", "scale", "-f", "json", "--store", store],
            check=True,
            capture_output=True,
            text=True,
        )
        status = json.loads(shown.stdout)
        registered = _registered_test_acc(Path(store))
    trials = len(status["rows"])
    print(
        f"sweep of {trials} trials on {limit} MNIST-sized images: {seconds:.0f} s "
        f"({trials / seconds * 3600:.0f} trials/hour), best val_acc {status['best_value']:.4f}, "
        f"registered test_acc {registered}"
    )


def _registered_test_acc(store: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    versions = client.search_model_versions()
    if not versions:
        return "n/a (nothing registered)"
    return f"{float(versions[0].tags['test_acc']):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=256.0,
        help="the image folder case's memory budget (the folder is twice its size)",
    )
    parser.add_argument("--measure", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure and args.measure[0] == "folder":
        folder, memory_mb, epochs = args.measure[1:]
        print(json.dumps(streamed_folder.measure(folder, float(memory_mb), int(epochs))))
        return
    if args.measure and args.measure[0] == "step":
        print(json.dumps({"step_mb": step_memory_mb(*args.measure[1:])}))
        return
    if args.measure:
        way, dataset, arch, folder, epochs = args.measure
        print(json.dumps(measure(way, dataset, arch, folder, int(epochs))))
        return
    scale = 100 if args.tiny else 1
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        folders = {
            "mnist": write_mnist(Path(tmp) / "mnist", 60_000 // scale, 10_000 // scale),
            "cifar10": write_cifar(Path(tmp) / "cifar", 50_000 // scale, 10_000 // scale),
        }
        print(
            f"data written in their formats: MNIST-sized {70_000 // scale} x 28x28, "
            f"CIFAR-10-sized {60_000 // scale} x 3x32x32 ({time.perf_counter() - started:.0f} s)"
        )
        epochs = {"mlp": 1 if args.tiny else 5, "cnn": 1 if args.tiny else 2}
        epochs_side_by_side(folders, epochs, CASES[-1:] if args.tiny else CASES)
        sweep_on_a_subset(folders["mnist"], 10_000 // scale, args.tiny)
        started = time.perf_counter()
        side = 16 if args.tiny else 48
        n = 400 if args.tiny else int(2 * args.budget_mb * 2**20 / (3 * side * side))
        folder, data_mb = streamed_folder.write_folder(Path(tmp) / "folder", n, side)
        print(f"{n} PNGs of 3x{side}x{side} written ({time.perf_counter() - started:.0f} s)")
        budget = data_mb / 2 if args.tiny else args.budget_mb
        streamed_folder.side_by_side(_in_fresh_process, folder, data_mb, budget, 1)


if __name__ == "__main__":
    main()
