"""data_scale.py's image-folder case: a folder of PNGs larger than a memory budget,
trained read into memory and streamed from disk by worker processes, side by side.

Memory is what training adds to a process that has made every import a fit makes:
the training process's peak resident memory above that level (Linux's VmHWM, reset
after the imports), plus the peak of its worker processes' unique memory (USS, what
each holds that no other process shares; sampled every 0.1 s with psutil).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

MLP = {"arch": "mlp", "hidden": [128]}  # small activations: the data is what is measured


def write_folder(root: Path, n: int, side: int) -> tuple[Path, float]:
    """``n`` RGB PNGs of side x side pixels (digits scaled up, in 10 class folders);
    returns the folder and its images' size in memory as bytes (MB)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    scale = side // 8
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = int(rng.integers(len(digits.images)))
        gray = np.kron((digits.images[k] * 15).astype(np.uint8), np.ones((scale, scale), np.uint8))
        rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
        Image.fromarray(rgb).save(root / str(digits.target[k]) / f"{i}.png")
    return root, n * 3 * side * side / 2**20


class _WorkerMemory:
    """The peak total USS of this process's children, sampled in a thread."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            total = 0
            for child in self.me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # it ended while being read
                    total += child.memory_full_info().uss
            self.peak = max(self.peak, total / 2**20)


def measure(folder: str, memory_mb: float, epochs: int) -> dict[str, Any]:
    """One fit of the MLP on ``folder`` with ``data.memory_mb``, in this process."""
    import torch
    from data_scale import _peak_mb, _reset_peak, _rss_mb

    from sweeplab.data.split import split
    from sweeplab.logs import quiet_libraries
    from sweeplab.spec import spec_from_dict
    from sweeplab.training.fit import fit

    def spec(data: dict[str, Any], max_epochs: int) -> Any:
        return spec_from_dict(
            {
                "name": "folder",
                "model": MLP,
                "data": data,
                "train": {
                    "optimizer": "adam",
                    "lr": 1e-3,
                    "batch_size": 128,
                    "max_epochs": max_epochs,
                },
                "objective": {"metric": "val_acc", "mode": "max"},
            }
        )

    quiet_libraries()
    fit(spec({"dataset": "digits"}, 1), test=False)  # every import a fit makes
    gc.collect()
    base = _rss_mb()
    _reset_peak()
    torch.manual_seed(0)
    exp = spec({"dataset": "image_folder", "path": folder, "memory_mb": memory_mb}, epochs)
    started = time.perf_counter()
    with _WorkerMemory() as workers:
        streamed = not isinstance(split(exp.data).x_train, np.ndarray)
        result = fit(exp, test=False)
    seconds = time.perf_counter() - started
    return {
        "streamed": streamed,
        "s_per_epoch": seconds / epochs,
        "main_mb": _peak_mb() - base,
        "workers_mb": workers.peak,
        "val_acc": float(result.value),
    }


def side_by_side(run: Any, folder: Path, data_mb: float, budget_mb: float, epochs: int) -> None:
    """Both ways, each in a fresh process (``run``), and the verdict."""
    print(
        f"image folder: {data_mb:.0f} MB of pixels, memory budget {budget_mb:.0f} MB, "
        f"{epochs} epoch(s) of an MLP"
    )
    rows = {}
    for way, memory_mb in (("in memory", 1e6), ("streamed", budget_mb)):
        rows[way] = r = run("folder", str(folder), str(memory_mb), str(epochs))
        total = r["main_mb"] + r["workers_mb"]
        print(
            f"  {way:<10} {r['s_per_epoch']:>7.1f} s/epoch  memory {total:>6.0f} MB "
            f"(training process {r['main_mb']:.0f} + workers {r['workers_mb']:.0f})  "
            f"val_acc {r['val_acc']:.4f}  {'streamed' if r['streamed'] else 'held'}",
            flush=True,
        )
    got = rows["streamed"]["main_mb"] + rows["streamed"]["workers_mb"]
    ratio = rows["streamed"]["s_per_epoch"] / rows["in memory"]["s_per_epoch"]
    print(
        f"  streamed: {got:.0f} MB (target <= the {budget_mb:.0f} MB budget: "
        f"{'met' if got <= budget_mb and rows['streamed']['streamed'] else 'MISSED'}), "
        f"{ratio:.2f}x the in-memory epoch time",
        flush=True,
    )
