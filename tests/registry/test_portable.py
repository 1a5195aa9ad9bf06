"""Registered versions that load anywhere: every architecture as a ``torch.export``
program that MLflow loads with torch alone, in a process where sweeplab cannot be
imported, answering as the model did in sweeplab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sweeplab.models.build import example_input, inference_model
from sweeplab.registry.register import register
from sweeplab.search.publish import log_trained_model
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fit import prepare
from tests.helpers import free_port, start_server, stop_server, tiny_spec
from tests.models.test_architectures import ARCHS

LOAD_WITHOUT_SWEEPLAB = """
import sys
try:
    import sweeplab
except ImportError:
    pass
else:
    raise SystemExit("sweeplab could be imported")
import mlflow.pyfunc, numpy as np
for name in sys.argv[2:]:
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    rows = np.load(f"{sys.argv[1]}/{name}-in.npy")
    np.save(f"{sys.argv[1]}/{name}-out.npy", np.asarray(model.predict(rows)))
"""


def _no_sweeplab(tmp_path: Path, store: Store) -> dict[str, str]:
    """An environment where ``import sweeplab`` fails (a stand-in package first on the
    path), with the store's tracking URI."""
    shadow = tmp_path / "shadow" / "sweeplab"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('sweeplab is not installed here')\n")
    return {
        **os.environ,
        # the environment's own commands first (mlflow models serve runs uvicorn)
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(shadow.parent),
        "MLFLOW_TRACKING_URI": store.tracking_uri,
    }


def _registered(tmp_path: Path, archs: list[str]) -> tuple[Store, dict[str, np.ndarray]]:
    """Each architecture's model (untrained: what matters is the form it is saved in),
    registered; returns what each answers in sweeplab, for 7 rows of input."""
    store = Store.resolve(tmp_path / "store")
    tracker = Tracker(store, "portable")
    expected = {}
    for arch in archs:
        model, data, objective, _ = ARCHS[arch]
        exp = spec_from_dict(tiny_spec(model=model, data=data, objective=objective))
        loaded, module = prepare(exp)
        module.eval()
        split = loaded.split
        run_id = tracker.start_run(arch)
        logged = log_trained_model(tracker, run_id, module, exp, split)
        assert logged.portable is None, f"{arch}: {logged.portable}"
        register(tracker, arch, logged.uri, run_id, {})
        served = inference_model(module, exp, split).eval()
        if served.output == "samples":
            rows = torch.randn(7, example_input(module, split).shape[1]).numpy()
        else:
            rows = split.raw(split.x_test[:7])
        np.save(tmp_path / f"{arch}-in.npy", rows)
        with torch.no_grad():
            expected[arch] = served(torch.as_tensor(rows)).numpy()
    return store, expected


def test_every_architecture_loads_and_predicts_without_sweeplab(tmp_path: Path) -> None:
    archs = list(ARCHS)
    store, expected = _registered(tmp_path, archs)
    out = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_SWEEPLAB, str(tmp_path), *archs],
        env=_no_sweeplab(tmp_path, store),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for arch in archs:
        got = np.load(tmp_path / f"{arch}-out.npy").reshape(expected[arch].shape)
        np.testing.assert_allclose(got, expected[arch], rtol=1e-5, atol=1e-6, err_msg=arch)
    requirements = next((tmp_path / "store").rglob("requirements.txt")).read_text()
    assert "sweeplab" not in requirements and "torch==" in requirements


@pytest.mark.distributed  # a model server of its own: CI runs it, make test does not
def test_mlflow_models_serve_answers_without_sweeplab(tmp_path: Path) -> None:
    store, expected = _registered(tmp_path, ["cnn"])
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/cnn/1"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(command, f"http://127.0.0.1:{port}/ping", env=_no_sweeplab(tmp_path, store))
    try:
        rows: Any = np.load(tmp_path / "cnn-in.npy")
        body = json.dumps({"inputs": rows.tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        got = np.asarray(answer["predictions"], dtype=np.float32)
        np.testing.assert_allclose(got, expected["cnn"], rtol=1e-5, atol=1e-6)
    finally:
        stop_server(proc)


class _Branchy(torch.nn.Module):
    """A module whose path depends on its input's values: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


def test_logging_a_model_checks_its_pins_without_reading_every_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib_metadata
    from mlflow.utils import requirements_utils

    # as in a sweep's process, where nothing has asked MLflow for the whole map yet
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    scans = []
    every = importlib_metadata.packages_distributions
    monkeypatch.setattr(
        importlib_metadata, "packages_distributions", lambda: scans.append(1) or every()
    )
    _registered(tmp_path, ["mlp"])
    assert scans == []  # about 1 s on this machine's environment, once per sweep
    requirements = next((tmp_path / "store").rglob("requirements.txt")).read_text()
    assert "torch==" in requirements and "mlflow==" in requirements


def test_a_model_torch_export_cannot_trace_is_saved_pickled_and_says_why(
    tmp_path: Path,
) -> None:
    import mlflow.pytorch

    from sweeplab.data.split import split
    from sweeplab.models.base import InferenceModel
    from sweeplab.registry.register import log_model
    from sweeplab.spec import DataConfig

    data = split(DataConfig(dataset="iris"))
    model = InferenceModel(_Branchy(), data, "probabilities").eval()
    tracker = Tracker(Store.resolve(tmp_path / "store"), "branchy")
    run_id = tracker.start_run("branchy")
    logged = log_model(tracker, run_id, model, data.raw(data.x_test[:5]))
    assert logged.portable is not None and "torch.export could not trace it" in logged.portable
    loaded = mlflow.pytorch.load_model(logged.uri)  # pickled: loads where sweeplab is
    rows = torch.as_tensor(data.raw(data.x_test[:3]))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(rows).numpy(), model(rows).numpy(), rtol=1e-6)
