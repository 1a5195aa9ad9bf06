"""SpecError: every problem of a spec, each naming the file, the dotted path and the value."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem: where (file and dotted path) and what (a sentence with the value)."""

    file: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        path = f"{self.path}: " if self.path else ""
        return f"{where}{path}{self.message}"


class InputError(Exception):
    """A file or model that a valid spec names cannot be used: a corrupt data file, a
    transfer source that is missing. Found before anything is created; exit status 2."""


class SpecError(ValueError):
    """A spec, a search space or an override is invalid. Lists every issue found."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(cls, file: str | None, path: str, message: str) -> SpecError:
        return cls([SpecIssue(file, path, message)])


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close option exists, else ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(options: Iterable[object]) -> str:
    return ", ".join(repr(o) if not isinstance(o, str) else o for o in options)
