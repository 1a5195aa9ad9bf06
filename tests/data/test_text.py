"""Text datasets: a CSV and a folder of .txt files read as written, a vocabulary fit on
the training split only, LSTM and Transformer trained end to end, and a registered
model that answers raw strings when served and when loaded without sweeplab."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sweeplab.cli import app
from sweeplab.data.split import split
from sweeplab.data.text import Vocabulary
from sweeplab.models.blocks import padding
from sweeplab.registry.models import ModelRef, client_for, load_torch, resolve
from sweeplab.search.single import train_once
from sweeplab.spec import DataConfig, TextConfig, spec_from_dict
from sweeplab.store import Store
from tests.helpers import call, free_port, start_server, stop_server, tiny_spec
from tests.registry.test_portable import _no_sweeplab

runner = CliRunner()
GOOD = ["good", "great", "lovely", "superb", "fine"]
BAD = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "really", "plot", "and", "actors", "quite"]


def review(rng: random.Random, positive: bool, tag: str = "") -> str:
    words = [*rng.sample(FILLER, 4), rng.choice(GOOD if positive else BAD)]
    rng.shuffle(words)
    return " ".join(words + ([tag] if tag else []))


def write_reviews(path: Path, n: int = 200, *, tagged: bool = False) -> Path:
    """A two-class CSV (text, label): the label says whether the review's one opinion
    word is a good or a bad one; ``tagged`` gives each row a word of its own."""
    rng = random.Random(0)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            positive = i % 2 == 0
            text = review(rng, positive, f"row{i}" if tagged else "")
            writer.writerow([text, "pos" if positive else "neg"])
    return path


def text_spec(path: Path, model: dict[str, Any], **data: Any) -> dict[str, Any]:
    return tiny_spec(
        name="reviews",
        model=model,
        data={
            "dataset": "text_csv",
            "path": str(path),
            "target": "label",
            "text": {"max_length": 8},
        }
        | data,
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 16, "max_epochs": 20},
    )


def test_a_text_csv_becomes_token_ids_padded_on_the_left(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([["Great film", "pos"]] * 10 + [["a b c d e f g h i j", "neg"]] * 10)
    text = TextConfig(max_length=6)
    s = split(DataConfig(dataset="text_csv", path=str(path), target="label", text=text))
    assert s.x_train.dtype == np.int64 and s.x_train.shape[1] == 6 and s.labels == ("neg", "pos")
    vocabulary = Vocabulary.from_json(s.tokenizer)
    short, long = vocabulary.encode(["great FILM", "a b c d e f g h i j"])
    # lower-cased, padded on the left with 0 (the last step is the last word), cut at 6
    assert short[:4].tolist() == [0, 0, 0, 0] and 0 not in short[4:] and 1 not in short
    assert 0 not in long and len(long) == 6
    assert s.vocab_size == vocabulary.size and s.x_train.max() < s.vocab_size


def test_the_vocabulary_is_fit_on_the_training_split_only(tmp_path: Path) -> None:
    """Each row has a word of its own: those of test rows are unknown ([UNK], id 1),
    those of training rows are not."""
    path = write_reviews(tmp_path / "reviews.csv", tagged=True)
    s = split(DataConfig(dataset="text_csv", path=str(path), target="label"))
    vocabulary = Vocabulary.from_json(s.tokenizer)
    known = set(vocabulary.tokenizer.get_vocab())
    test_tags = [text.split()[-1] for text in s.test_texts]
    assert test_tags and not known & set(test_tags)
    assert (s.x_test[:, -1] == 1).all()  # each test text's own word, its last token
    assert (s.x_train[:, -1] > 1).all()
    assert {"good", "bad", "film"} <= known


def test_a_folder_of_text_files_by_class(tmp_path: Path) -> None:
    rng = random.Random(1)
    for name, positive in (("negative", False), ("positive", True)):
        (tmp_path / "docs" / name).mkdir(parents=True)
        for i in range(12):
            (tmp_path / "docs" / name / f"{i}.txt").write_text(review(rng, positive))
    (tmp_path / "docs" / "positive" / "notes.md").write_text("not a document")
    s = split(DataConfig(dataset="text_folder", path=str(tmp_path / "docs")))
    assert s.labels == ("negative", "positive")
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 24


def test_padding_marks_zero_steps_but_never_the_last() -> None:
    x = torch.zeros(2, 4, 3)
    x[0, 2:] = 1.0
    assert padding(x).tolist() == [[True, True, False, False], [True, True, True, False]]


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "lstm", "hidden_size": 16, "embedding": 16},
        {"arch": "gru", "hidden_size": 16, "embedding": 16, "pool": "mean"},
        {"arch": "transformer", "d_model": 16, "heads": 2, "ff_dim": 32, "embedding": 16},
    ],
    ids=["lstm", "gru-mean", "transformer"],
)
def test_recurrent_and_transformer_models_learn_a_text_csv(
    tmp_path: Path, model: dict[str, Any]
) -> None:
    exp = spec_from_dict(text_spec(write_reviews(tmp_path / "reviews.csv"), model))
    result = train_once(exp, Store.resolve(tmp_path / "store"))
    assert result.outcome.test["test_acc"] >= 0.9, result.outcome.test


def test_a_registered_text_model_answers_raw_strings(tmp_path: Path) -> None:
    """Served (sweeplab serve, real HTTP) and portable (MLflow's pyfunc in a process
    where sweeplab cannot be imported), each as the model answers its token ids."""
    spec = text_spec(write_reviews(tmp_path / "reviews.csv"), {"arch": "lstm", "hidden_size": 16})
    store = Store.resolve(tmp_path / "store")
    result = train_once(spec_from_dict(spec), store, register_as="reviews")
    assert result.registered == ("reviews", 1)
    texts = ["the film was great", "an awful plot", "Lovely actors, never seen before!"]
    model = load_torch(
        store.tracking_uri,
        resolve(client_for(store.tracking_uri), ModelRef("reviews", version="1")),
    )
    vocabulary = Vocabulary.from_json(model.tokenizer)
    with torch.no_grad():
        expected = model(torch.as_tensor(vocabulary.encode(texts))).numpy()
    assert expected.argmax(axis=1).tolist()[:2] == [1, 0]  # pos, neg

    script = (
        "import sys, json, mlflow.pyfunc\n"
        "model = mlflow.pyfunc.load_model('models:/reviews/1')\n"
        "print(json.dumps(model.predict(json.loads(sys.argv[1])).tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(texts)],
        env=_no_sweeplab(tmp_path, store),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(json.loads(out.stdout.splitlines()[-1]), expected, rtol=1e-5)

    port = free_port()
    command = [sys.executable, "-m", "sweeplab", "serve", "reviews/1", "--port", str(port)]
    proc = start_server([*command, "--store", str(store.root)], f"http://127.0.0.1:{port}/health")
    try:
        status, body = call(
            f"http://127.0.0.1:{port}/predict", json.dumps({"rows": texts}).encode()
        )
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-5)
        assert body["labels"][:2] == ["pos", "neg"]
        status, body = call(f"http://127.0.0.1:{port}/predict", b'{"rows": [[1, 2, 3]]}')
        assert status == 422 and "expected a string" in body["error"]
    finally:
        stop_server(proc)


def _refused(tmp_path: Path, spec: dict[str, Any], *expected: str) -> None:
    """``sweeplab train`` exits 2 with ``expected`` said, no traceback, no store."""
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    store = tmp_path / "store"
    result = runner.invoke(app, ["train", str(path), "--store", str(store)])
    assert result.exit_code == 2, result.output
    for words in expected:
        assert words in result.output
    assert "Traceback" not in result.output and not store.exists()


def test_bad_text_data_exits_2_naming_the_file_and_writing_nothing(tmp_path: Path) -> None:
    lstm = {"arch": "lstm", "hidden_size": 8}
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n,pos\n  ,neg\n")
    _refused(tmp_path, text_spec(empty, lstm), str(empty), "text column 'text' is empty")
    reviews = write_reviews(tmp_path / "reviews.csv")
    _refused(tmp_path, text_spec(reviews, lstm, target="stars"), "no column 'stars' (data.target)")
    _refused(
        tmp_path,
        text_spec(reviews, lstm, text={"column": "body"}),
        "no column 'body' (data.text.column)",
    )
    (tmp_path / "docs" / "only").mkdir(parents=True)
    (tmp_path / "docs" / "only" / "a.txt").write_text("one class")
    folder = text_spec(reviews, lstm)
    folder["data"] = {"dataset": "text_folder", "path": str(tmp_path / "docs")}
    _refused(tmp_path, folder, "docs: expected one sub-folder", "(at least 2)")
    (tmp_path / "docs" / "other").mkdir()
    (tmp_path / "docs" / "other" / "b.txt").write_bytes(b"caf\xe9 latin-1")
    _refused(tmp_path, folder, "b.txt: not UTF-8 text")
    (tmp_path / "docs" / "other" / "b.txt").write_text("  \n")
    _refused(tmp_path, folder, "b.txt: an empty document")
    _refused(tmp_path, text_spec(reviews, lstm, augment={"noise": 0.1}), "data.augment.noise")
    _refused(tmp_path, text_spec(reviews, {"arch": "mlp"}), "model.arch", "tokens")
