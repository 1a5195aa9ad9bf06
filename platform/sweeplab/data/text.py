"""Text datasets and their tokenizer.

- a CSV file with a text column (``data.text.column``) and a label column (``data.target``)
- a folder of documents by class: ``<path>/<class>/<document>.txt``, classes in sorted order

The readers return the documents as an object array of strings. ``Vocabulary`` is
Hugging Face's ``tokenizers`` word-level tokenizer: fit on the training split's texts
only, it turns each text into ``max_length`` token ids, padded on the left with id 0
(``[PAD]``; a recurrent network's last step is then the text's last word), words it did
not see in training as id 1 (``[UNK]``). Its JSON travels with a registered model, so a
served or portable model takes raw strings and encodes them as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sweeplab.data.files import DataError
from sweeplab.spec import TextConfig

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1


def load_text_csv(path: Path, column: str, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The documents of ``column``, their labels (indices of the sorted distinct values of
    ``target``), and those values."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={column: str}, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    for name, field in ((column, "data.text.column"), (target, "data.target")):
        if name not in frame.columns:
            raise DataError(
                f"{path}: no column {name!r} ({field}); columns: {', '.join(map(str, frame))}"
            )
    texts = frame[column].astype(str)
    empty = texts.str.strip() == ""
    if empty.all():
        raise DataError(f"{path}: the text column {column!r} is empty in every row")
    if empty.any():
        row = int(empty.to_numpy().argmax())
        raise DataError(f"{path}: the text column {column!r} is empty in data row {row + 1}")
    labels = frame[target]
    unlabelled = labels.astype(str).str.strip() == ""
    if unlabelled.any():
        row = int(unlabelled.to_numpy().argmax())
        raise DataError(f"{path}: the label column {target!r} is empty in data row {row + 1}")
    classes = sorted(labels.unique().tolist(), key=str)
    if len(classes) < 2:
        raise DataError(f"{path}: the label column {target!r} has one class, {classes}; need 2+")
    index = {c: i for i, c in enumerate(classes)}
    return _strings(texts.tolist()), labels.map(index).to_numpy(np.int64), [str(c) for c in classes]


def load_text_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``folder/<class>/<document>.txt`` (UTF-8): documents, labels, class names."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(
            f"{folder}: expected one sub-folder of .txt files per class (at least 2), "
            f"found {classes}"
        )
    texts, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.txt")):
            try:
                document = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: not UTF-8 text ({exc})") from None
            if not document.strip():
                raise DataError(f"{path}: an empty document")
            texts.append(document)
            labels.append(label)
    if not texts:
        raise DataError(f"{folder}: no .txt documents in its class folders")
    return _strings(texts), np.asarray(labels, dtype=np.int64), classes


def _strings(texts: Sequence[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = list(texts)
    return out


class Vocabulary:
    """A word-level tokenizer (``tokenizers``) and how it pads: fit, encode, saved as JSON."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def fit(cls, texts: Sequence[str], cfg: TextConfig) -> Vocabulary:
        """The ``cfg.vocab_size`` most frequent words of ``texts`` (the training split's)."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        steps = [normalizers.NFKC(), *([normalizers.Lowercase()] if cfg.lowercase else [])]
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation
        trainer = trainers.WordLevelTrainer(
            vocab_size=cfg.vocab_size, special_tokens=[PAD, UNK], show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        tokenizer.enable_truncation(cfg.max_length)
        tokenizer.enable_padding(direction="left", pad_id=0, pad_token=PAD, length=cfg.max_length)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        return str(self.tokenizer.to_str())

    @property
    def size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, max_length) int64 token ids."""
        encoded = self.tokenizer.encode_batch(list(texts))
        return np.asarray([e.ids for e in encoded], dtype=np.int64).reshape(len(encoded), -1)
