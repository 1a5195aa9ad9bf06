"""The built-in datasets a spec may name (no torch or scikit-learn import here)."""

from dataclasses import dataclass
from typing import Literal

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class DatasetInfo:
    task: Task
    description: str
    generated: bool = False  # generated sets take ``n_samples`` and ``noise``


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("classification", "scikit-learn digits: 8x8 images, 10 classes"),
    "iris": DatasetInfo("classification", "scikit-learn iris: 4 features, 3 classes"),
    "wine": DatasetInfo("classification", "scikit-learn wine: 13 features, 3 classes"),
    "breast_cancer": DatasetInfo("classification", "scikit-learn breast cancer: 30 features"),
    "diabetes": DatasetInfo("regression", "scikit-learn diabetes: 10 features, regression"),
    "xor": DatasetInfo("classification", "four Gaussian clusters labelled XOR", generated=True),
    "moons": DatasetInfo("classification", "two interleaving half circles", generated=True),
    "circles": DatasetInfo("classification", "a circle inside a circle", generated=True),
}
