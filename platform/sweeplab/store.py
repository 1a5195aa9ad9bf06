"""Where everything lives: the store folder, the MLflow tracking URI, the Optuna storage URL.

The default is one folder in the working directory, ``sweeplab-store/``:

    sweeplab-store/
      mlflow.db      MLflow runs, metrics, registry (SQLite)
      artifacts/     MLflow artifacts (curves, models)
      optuna.db      Optuna studies, one per sweep (SQLite)

Each part can be pointed elsewhere: ``--store`` / ``SWEEPLAB_STORE`` moves the
folder, ``--tracking-uri`` / ``SWEEPLAB_TRACKING_URI`` an MLflow server,
``--storage`` / ``SWEEPLAB_STORAGE`` any SQLAlchemy URL (PostgreSQL for teams).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE = "sweeplab-store"


class StoreError(Exception):
    """The store cannot be used: a malformed URL, an unknown database, an unwritable folder."""


@dataclass(frozen=True)
class Store:
    root: Path
    tracking_uri: str
    storage_url: str

    @classmethod
    def resolve(
        cls,
        store: str | Path | None = None,
        tracking_uri: str | None = None,
        storage: str | None = None,
    ) -> Store:
        """Arguments first, then environment variables, then the default folder."""
        root = Path(store or os.environ.get("SWEEPLAB_STORE") or DEFAULT_STORE).absolute()
        tracking = tracking_uri or os.environ.get("SWEEPLAB_TRACKING_URI")
        storage_url = storage or os.environ.get("SWEEPLAB_STORAGE")
        return cls(
            root=root,
            tracking_uri=tracking or f"sqlite:///{root / 'mlflow.db'}",
            storage_url=storage_url or f"sqlite:///{root / 'optuna.db'}",
        )

    @property
    def local_tracking(self) -> bool:
        return self.tracking_uri.startswith("sqlite:///") and self.tracking_uri.endswith(
            str(self.root / "mlflow.db")
        )

    @property
    def artifact_root(self) -> Path:
        return self.root / "artifacts"

    @property
    def artifact_location(self) -> str | None:
        """Where new MLflow experiments keep artifacts: the store's folder when the runs are
        in a database (SQLite, PostgreSQL); None for a tracking server, which decides."""
        return None if self.tracking_server else self.artifact_root.as_uri()

    @property
    def tracking_server(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def storage_exists(self) -> bool:
        """False when the default SQLite study file has not been created yet."""
        if self.storage_url.startswith("sqlite:///"):
            return Path(self.storage_url.removeprefix("sqlite:///")).is_file()
        return True

    def check(self) -> None:
        """Reject malformed URLs before anything is created (imports SQLAlchemy)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(self.storage_url).get_dialect()
        except (ArgumentError, NoSuchModuleError) as exc:
            raise StoreError(
                f"--storage {self.storage_url!r} is not a usable SQLAlchemy URL "
                f"({exc}); for example sqlite:///sweeps.db or "
                "postgresql+psycopg2://user@host:5432/db"
            ) from None
        if not self.tracking_uri.startswith(
            ("sqlite:///", "http://", "https://", "postgresql", "mysql", "file:")
        ):
            raise StoreError(
                f"--tracking-uri {self.tracking_uri!r} is not a tracking URI MLflow "
                "reads; use sqlite:///..., postgresql://... or http(s)://server"
            )

    def prepare(self) -> None:
        """Check the URLs, then create the local folders they point into (before writing)."""
        self.check()
        try:
            for url in (self.tracking_uri, self.storage_url):
                if url.startswith("sqlite:///"):
                    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            if not self.tracking_server:
                self.artifact_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store: {exc}") from None
