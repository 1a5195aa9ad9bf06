"""A text model as MLflow serves it: raw strings in, the tokenizer fit in training, then
the network. MLflow copies this file into every text model version (a "model from
code"): it runs with the version's logged requirements alone (torch, mlflow,
tokenizers), without sweeplab, and sweeplab never imports it.

Artifacts: ``tokenizer`` (the ``tokenizers`` JSON, padding and truncation included),
``program`` (the network as a ``torch.export`` program over token ids) where it could be
exported, and ``module`` (the pickled module, which needs sweeplab to load) always.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel


class TextModel(PythonModel):
    """``predict``: a list of strings, a Series or a one-column DataFrame of them → one
    row of outputs per text (a classifier's class probabilities)."""

    # predict's arguments carry no type hints: MLflow would read them as an input schema
    def load_context(self, context: Any) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        if "program" in context.artifacts:
            self.net = torch.export.load(context.artifacts["program"]).module()
        else:
            self.net = torch.load(context.artifacts["module"], weights_only=False).eval()

    def predict(self, context, model_input, params=None):
        texts = _texts(model_input)
        encoded = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
        with torch.no_grad():
            return self.net(ids).numpy()


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0]
    if isinstance(model_input, str):
        return [model_input]
    return [str(text) for text in np.asarray(model_input, dtype=object).reshape(-1)]


mlflow.models.set_model(TextModel())
