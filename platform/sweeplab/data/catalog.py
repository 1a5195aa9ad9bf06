"""The datasets a spec may name (no torch or scikit-learn import here)."""

from dataclasses import dataclass
from typing import Literal

Task = Literal["classification", "regression"]
Kind = Literal["tabular", "image", "series", "text"]


@dataclass(frozen=True)
class DatasetInfo:
    task: Task | None  # None: the spec says (data.task), as for a CSV file
    kind: Kind
    description: str
    generated: bool = False  # generated sets take ``n_samples`` and ``noise``
    from_path: bool = False  # read from ``data.path`` in the dataset's published format


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("classification", "image", "scikit-learn digits: 8x8 images, 10 classes"),
    "iris": DatasetInfo("classification", "tabular", "scikit-learn iris: 4 features, 3 classes"),
    "wine": DatasetInfo("classification", "tabular", "scikit-learn wine: 13 features, 3 classes"),
    "breast_cancer": DatasetInfo(
        "classification", "tabular", "scikit-learn breast cancer: 30 features"
    ),
    "diabetes": DatasetInfo("regression", "tabular", "scikit-learn diabetes: 10 features"),
    "xor": DatasetInfo(
        "classification", "tabular", "four Gaussian clusters labelled XOR", generated=True
    ),
    "moons": DatasetInfo(
        "classification", "tabular", "two interleaving half circles", generated=True
    ),
    "circles": DatasetInfo("classification", "tabular", "a circle inside a circle", generated=True),
    "sunspots": DatasetInfo(
        "regression", "series", "statsmodels yearly sunspots: forecast the next year"
    ),
    "mnist": DatasetInfo("classification", "image", "MNIST IDX files in data.path", from_path=True),
    "fashion_mnist": DatasetInfo(
        "classification", "image", "Fashion-MNIST IDX files in data.path", from_path=True
    ),
    "cifar10": DatasetInfo(
        "classification", "image", "CIFAR-10 python batches in data.path", from_path=True
    ),
    "image_folder": DatasetInfo(
        "classification", "image", "data.path/<class>/<image>.png|jpg", from_path=True
    ),
    "csv": DatasetInfo(None, "tabular", "a CSV file with a data.target column", from_path=True),
    "text_csv": DatasetInfo(
        "classification",
        "text",
        "a CSV file with a text column (data.text.column) and a label (data.target)",
        from_path=True,
    ),
    "text_folder": DatasetInfo(
        "classification", "text", "data.path/<class>/<document>.txt", from_path=True
    ),
}

# The views each kind of dataset can be shown as (see models.catalog.VIEWS).
KIND_VIEWS: dict[str, tuple[str, ...]] = {
    "tabular": ("flat", "sequence"),
    "image": ("flat", "image", "sequence", "rows"),
    "series": ("flat", "sequence"),
    "text": ("tokens",),  # token ids, embedded by the model's first layer
}
