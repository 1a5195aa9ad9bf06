"""Transfer learning from a model registered in the same test store, a folder or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from sweeplab.cli import app
from sweeplab.models.transfer import SourceError
from sweeplab.search import run_sweep, train_once
from sweeplab.spec import spec_from_dict
from sweeplab.training.fit import fit, prepare
from tests.helpers import tiny_spec

runner = CliRunner()

SOURCE = tiny_spec(
    name="digits-0to4",
    model={"arch": "cnn", "channels": [4, 8], "norm": "batch", "head": [8]},
    data={"dataset": "digits", "classes": [0, 1, 2, 3, 4]},
    train={"max_epochs": 3},
    search_space={},
)


def target(source: str, mode: str, **train: Any) -> dict[str, Any]:
    return tiny_spec(
        name="transfer",
        model={"arch": "transfer", "source": source, "mode": mode},
        data={"dataset": "digits", "classes": [5, 6, 7, 8, 9], "label_fraction": 0.2},
        train={"max_epochs": 2, **train},
        search_space={},
    )


@pytest.fixture
def registered(store: Any) -> str:
    """A CNN trained on the digits 0-4, registered as digits-0to4 version 1 @champion."""
    train_once(spec_from_dict(SOURCE), store, register_as="digits-0to4")
    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    client.set_registered_model_alias("digits-0to4", "champion", "1")
    return "models:/digits-0to4@champion"


def _backbone(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.net.backbone.state_dict().items()}


def test_each_mode_starts_from_the_registered_backbone_as_it_should(
    store: Any, registered: str
) -> None:
    uri = store.tracking_uri
    _, source_model = prepare(spec_from_dict(target(registered, "finetune")), tracking_uri=uri)
    source = _backbone(source_model)

    frozen = fit(spec_from_dict(target(registered, "feature_extraction")), tracking_uri=uri)
    after = _backbone(frozen.module)
    assert all(torch.equal(after[k], source[k]) for k in source)  # weights and BN statistics

    tuned = fit(spec_from_dict(target(registered, "finetune", lr=0.01)), tracking_uri=uri)
    groups = tuned.module.trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01])  # backbone at lr / 10
    assert any(not torch.equal(_backbone(tuned.module)[k], source[k]) for k in source)

    _, scratch = prepare(spec_from_dict(target(registered, "scratch")), tracking_uri=uri)
    assert not torch.equal(_backbone(scratch)["0.weight"], source["0.weight"])


def test_the_backbone_sees_target_rows_standardized_as_the_source_was_trained(
    store: Any, registered: str
) -> None:
    from sweeplab.training.sources import load_source

    exp = spec_from_dict(target(registered, "finetune"))
    data, module = prepare(exp, tracking_uri=store.tracking_uri)
    source = load_source(registered, store.tracking_uri)
    s = data.split
    raw = torch.as_tensor(s.raw(s.x_val[:7]))
    seen = module.to_view(torch.as_tensor(s.x_val[:7]))  # the target's standardization in
    expected = source.net.view((raw - source.mean) / source.std)  # the source's, as trained
    assert torch.allclose(seen, expected, atol=1e-4)
    assert not torch.allclose(source.mean, torch.as_tensor(s.mean))  # the two really differ


def test_a_transfer_sweep_over_the_three_modes(store: Any, registered: str) -> None:
    spec = target("models:/digits-0to4/1", "finetune")
    spec["search_space"] = {
        "model.mode": {
            "type": "categorical",
            "choices": ["scratch", "finetune", "feature_extraction"],
        }
    }
    spec["sweep"] = {"trials": 3, "sampler": "grid"}
    spec["tracking"] = {"experiment": "transfer", "register_as": "digits-5to9"}
    result = run_sweep(spec_from_dict(spec), store)
    assert result.counts.complete == 3
    assert result.registered == ("digits-5to9", 1)


def test_sources_from_a_local_model_folder_and_a_torch_save_file(
    store: Any, registered: str, tmp_path: Path
) -> None:
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    version = client.get_model_version("digits-0to4", "1")
    folder = download_artifacts(
        artifact_uri=version.source, dst_path=str(tmp_path / "dl"), tracking_uri=store.tracking_uri
    )
    # the version is a torch.export program; its module (what transfer takes) beside it
    module = torch.load(Path(folder, "extra_files", "module.pt"), weights_only=False)
    file = tmp_path / "source.pt"
    torch.save(module, file)
    _, from_registry = prepare(
        spec_from_dict(target(registered, "feature_extraction")), tracking_uri=store.tracking_uri
    )
    expected = _backbone(from_registry)
    for source in (folder, str(file)):
        exp = spec_from_dict(target(source, "feature_extraction"))
        _, fresh = prepare(exp)
        start = _backbone(fresh)  # the same weights as the registered version's backbone
        assert start.keys() == expected.keys()
        assert all(torch.equal(start[k], expected[k]) for k in expected)
        trained = fit(exp)
        assert trained.epochs == 2
        after = _backbone(trained.module)  # frozen: still the source's
        assert all(torch.equal(after[k], expected[k]) for k in expected)


def test_unusable_sources_fail_before_anything_is_created(
    store: Any, registered: str, tmp_path: Path, write_spec: Any
) -> None:
    with pytest.raises(SourceError, match="digits-0to4-nope"):
        prepare(
            spec_from_dict(target("models:/digits-0to4-nope/1", "finetune")),
            tracking_uri=store.tracking_uri,
        )
    iris_source = tiny_spec(name="iris-src", search_space={})
    train_once(spec_from_dict(iris_source), store, register_as="iris-src")
    with pytest.raises(SourceError, match="takes 4 features, but dataset 'digits' has 64"):
        prepare(
            spec_from_dict(target("models:/iris-src/1", "finetune")),
            tracking_uri=store.tracking_uri,
        )
    text = tmp_path / "not-a-model.pt"
    text.write_text("hello")
    with pytest.raises(SourceError, match=r"not a file written by torch\.save"):
        prepare(spec_from_dict(target(str(text), "finetune")))

    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="torchvision is not installed"):
            prepare(spec_from_dict(target("torchvision:resnet18", "finetune")))

    # through the CLI, on a store with no registry yet: exit 2, and no store is created
    empty = tmp_path / "empty-store"
    spec = write_spec(target("models:/digits-0to4/1", "finetune"))
    result = runner.invoke(app, ["sweep", str(spec), "--store", str(empty)])
    assert result.exit_code == 2, result.output
    assert "no model registry" in result.output and "Traceback" not in result.output
    assert not empty.exists()
