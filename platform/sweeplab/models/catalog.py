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

# Normalization of feature vectors (MLP, dense layers) ...
NORMS: dict[str, str | None] = {
    "none": None,
    "batch": "BatchNorm1d",
    "layer": "LayerNorm",
}

# ... and of image feature maps (CNN): layer norm over a map is GroupNorm with one group.
NORMS_2D: dict[str, str | None] = {
    "none": None,
    "batch": "BatchNorm2d",
    "layer": "GroupNorm",
    "instance": "InstanceNorm2d",
}

INITS: dict[str, str | None] = {
    "default": None,  # PyTorch's own default initialization
    "he": "kaiming_normal_",
    "xavier": "xavier_uniform_",
}

# How a model sees one example (data.view). Data is stored flat; the model's
# first layer reshapes it. "sequence" is one step per pixel (or value), "rows"
# one step (token) per image row, "tokens" one step per word of a text (its id, embedded
# by the model's first layer).
VIEWS = ("flat", "image", "sequence", "rows", "tokens")
