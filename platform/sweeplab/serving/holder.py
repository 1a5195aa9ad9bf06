"""The model a service answers with, loaded from the registry; swapped when its alias moves."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeplab.registry.lineage import PREFIX, TAG_INPUT, TAG_LABELS, TAG_OUTPUT, TAG_SPEC
from sweeplab.registry.models import ModelRef, client_for, download, resolve


@dataclass(frozen=True)
class Loaded:
    """One version, loaded as MLflow's pyfunc model (what ``mlflow models serve`` runs)."""

    model: Any
    version: int
    run_id: str
    n_features: int
    output: str
    metadata: dict[str, Any]
    text: bool = False  # strings in (a text model's tokenizer encodes them)

    def predict(self, rows: np.ndarray) -> dict[str, Any]:
        return self.answer(self.outputs(rows))

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        """The model's outputs, a row for each of ``rows``."""
        if self.text:  # its signature is a column of strings
            return np.asarray(self.model.predict([str(text) for text in rows]))
        return np.asarray(self.model.predict(rows))

    def answer(self, out: np.ndarray) -> dict[str, Any]:
        """The response body of ``outputs``: predictions (and labels for classes)."""
        answer: dict[str, Any] = {"version": self.version}
        if self.output in ("values", "anomaly_score") and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        answer["predictions"] = out.tolist()
        if self.output == "probabilities":
            indices = out.argmax(axis=1).tolist()
            names = self.metadata.get("labels") or []
            # the data's own class values; a version logged without them says the index
            answer["labels"] = [names[i] if i < len(names) else str(i) for i in indices]
            answer["label_indices"] = indices
        return answer


class ModelHolder:
    """The loaded version of ``ref``; ``refresh`` reloads when the reference moves."""

    def __init__(
        self,
        tracking_uri: str,
        ref: ModelRef,
        on_swap: Callable[[Loaded], None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.ref = ref
        self.on_swap = on_swap
        self.client = client_for(tracking_uri)
        self._lock = threading.Lock()
        self._current = self._load()

    @property
    def current(self) -> Loaded:
        with self._lock:
            return self._current

    def refresh(self) -> bool:
        """Load the version the reference points at now, if it is another; True if swapped."""
        version = int(resolve(self.client, self.ref).version)
        if version == self.current.version:
            return False
        loaded = self._load()  # the old version answers until the new one is ready
        with self._lock:
            self._current = loaded
        if self.on_swap is not None:
            self.on_swap(loaded)
        return True

    def follow(
        self,
        every: float,
        stop: threading.Event,
        on_error: Callable[[Exception], None] | None = None,
    ) -> threading.Thread:
        """Poll the registry every ``every`` seconds in a daemon thread until ``stop``."""

        def loop() -> None:
            while not stop.wait(every):
                try:
                    self.refresh()
                except Exception as exc:  # keep serving the loaded version
                    if on_error is not None:
                        on_error(exc)

        thread = threading.Thread(target=loop, name="follow-alias", daemon=True)
        thread.start()
        return thread

    def _load(self) -> Loaded:
        import mlflow.pyfunc

        version = resolve(self.client, self.ref)
        with tempfile.TemporaryDirectory(prefix="sweeplab-serve-") as tmp:
            model = mlflow.pyfunc.load_model(str(download(self.tracking_uri, version, tmp)))
        signature = model.metadata.signature
        inputs = signature.inputs.to_dict() if signature else []
        shape = inputs[0].get("tensor-spec", {}).get("shape", [-1, 0]) if inputs else [-1, 0]
        tags = dict(version.tags or {})
        extra = model.metadata.metadata or {}
        lineage: dict[str, Any] = {
            k.removeprefix(PREFIX): v for k, v in tags.items() if k.startswith(PREFIX)
        }
        if TAG_SPEC in tags:
            lineage["spec"] = json.loads(tags[TAG_SPEC])
        metadata = {
            "name": self.ref.name,
            "version": int(version.version),
            "alias": self.ref.alias,
            "reference": str(self.ref),
            "run_id": version.run_id,
            "source": version.source,
            "lineage": lineage,
            "input_schema": inputs,
            "output_schema": signature.outputs.to_dict() if signature and signature.outputs else [],
            "output": extra.get(TAG_OUTPUT, tags.get(TAG_OUTPUT, "unknown")),
            "labels": list(extra.get(TAG_LABELS, [])),
            "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return Loaded(
            model,
            int(version.version),
            version.run_id or "",
            int(shape[-1]),
            str(metadata["output"]),
            metadata,
            text=extra.get(TAG_INPUT) == "text",
        )
