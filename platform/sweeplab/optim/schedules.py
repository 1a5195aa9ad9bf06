"""Learning-rate schedules by name (torch's schedulers), with an optional linear warm-up.

Returned in Lightning's ``lr_scheduler`` config form: per epoch, except one-cycle
(per batch); reduce-on-plateau watches ``val_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import lr_scheduler

from sweeplab.spec import ScheduleConfig

WARMUP_START = 0.1  # the warm-up ramps the learning rate from lr/10 to lr


def build_scheduler(
    cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, max_epochs: int, total_steps: int
) -> dict[str, Any] | None:
    warmup = min(cfg.warmup_epochs, max(max_epochs - 1, 0))
    if cfg.name == "onecycle":
        sched: Any = lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=max(total_steps, 1),
            pct_start=warmup / max_epochs if warmup else 0.3,
        )
        return {"scheduler": sched, "interval": "step"}
    if cfg.name == "plateau":
        sched = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
        )
        return {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}
    main: lr_scheduler.LRScheduler | None = None
    if cfg.name == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    elif cfg.name == "cosine":
        main = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(max_epochs - warmup, 1), eta_min=cfg.min_lr
        )
    if warmup:
        ramp = lr_scheduler.LinearLR(optimizer, WARMUP_START, 1.0, total_iters=warmup)
        if main is None:
            return {"scheduler": ramp, "interval": "epoch"}
        sched = lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
        return {"scheduler": sched, "interval": "epoch"}
    return None if main is None else {"scheduler": main, "interval": "epoch"}
