"""Names a spec may use for optimizers and losses (no torch import here)."""

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
