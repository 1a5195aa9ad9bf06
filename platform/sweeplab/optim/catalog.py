"""Names a spec may use for optimizers, losses and learning-rate schedules (no torch import)."""

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
}

# loss name -> the task it applies to
LOSSES: dict[str, str] = {
    "cross_entropy": "classification",
    "mse": "regression",
    "huber": "regression",
}

# schedule name -> the torch.optim.lr_scheduler class behind it (see optim.schedules)
SCHEDULES: dict[str, str | None] = {
    "none": None,
    "step": "StepLR",
    "cosine": "CosineAnnealingLR",
    "onecycle": "OneCycleLR",
    "plateau": "ReduceLROnPlateau",
}
