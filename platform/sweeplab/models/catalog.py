"""Names a spec may use for model building blocks (no torch import here).

Each table maps the spec name to the ``torch.nn`` class (or init function) that
implements it; ``sweeplab.models.blocks`` resolves them.
"""

ACTIVATIONS: dict[str, str] = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "prelu": "PReLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "gelu": "GELU",
}

NORMS: dict[str, str | None] = {
    "none": None,
    "batch": "BatchNorm1d",
    "layer": "LayerNorm",
}

INITS: dict[str, str | None] = {
    "default": None,  # PyTorch's own default initialization
    "he": "kaiming_normal_",
    "xavier": "xavier_uniform_",
}
