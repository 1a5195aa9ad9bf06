"""What the tests share besides fixtures: tiny specs, the command line as a user runs it,
real servers (PostgreSQL, MLflow, headless Chromium) started and stopped.

Imported by name (``from tests.helpers import tiny_spec``); ``conftest`` holds only
fixtures.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"arch": "mlp", "hidden": [16]},
    "data": {"dataset": "iris"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "max_epochs": 3},
    "objective": {"metric": "val_acc", "mode": "max"},
    "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
    "sweep": {"trials": 2, "sampler": "random", "seed": 0},
    # the tests that look at the sweep-end report turn it on (2 s of each sweep's end)
    "tracking": {"experiment": "tiny", "report": False, "baselines": False},
}


def tiny_spec(**sections: Any) -> dict[str, Any]:
    """TINY with sections merged in: tiny_spec(train={"max_epochs": 5}).

    A model of another architecture replaces TINY's MLP instead of merging into it.
    """
    spec = copy.deepcopy(TINY)
    for key, value in sections.items():
        other_arch = key == "model" and value.get("arch", "mlp") != "mlp"
        if (
            isinstance(value, dict)
            and isinstance(spec.get(key), dict)
            and key != "search_space"
            and not other_arch
        ):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


def all_runs(store: Any, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return list(client.search_runs([exp.experiment_id], max_results=1000))


@dataclass
class Finished:
    """A store with a finished sweep and two versions of one registered model."""

    store: Any
    sweep: str
    model: str
    good: int  # registered by the sweep (its best trial)
    bad: int  # one epoch at a tiny learning rate: worse on the same test split
    experiment: str


def sweeplab(*args: str, **kwargs: Any) -> Any:
    """Run the CLI in a subprocess, as a user does; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "sweeplab", *args], capture_output=True, text=True, **kwargs
    )


def in_process(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run the CLI in this process, as ``sweeplab`` runs it in a fresh one; returns a
    CompletedProcess just the same. For the commands a test runs after a sweep it ran as
    a user does: each saves the seconds of a new interpreter's imports."""
    import subprocess

    from typer.testing import CliRunner

    from sweeplab.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return subprocess.CompletedProcess(
        ["sweeplab", *args], result.exit_code, result.stdout, result.stderr
    )


@dataclass
class Postgres:
    port: int
    # pg_ctl's arguments for this server (data folder, options), and the command prefix
    # that runs it as the ``postgres`` user when the tests run as root
    ctl: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()

    def stop(self) -> None:
        """Stop the server as an administrator's restart does (``-m fast``: clients are
        disconnected, open transactions rolled back)."""
        import subprocess

        subprocess.run(
            [*self.prefix, "pg_ctl", *self.ctl, "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        import subprocess

        subprocess.run(
            [*self.prefix, "pg_ctl", *self.ctl, "-w", "start"], check=True, capture_output=True
        )

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://sweeplab@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        engine.dispose()
        return self.url(database)


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """(status, JSON body) of a GET, or of a POST of JSON when ``body`` is given (a
    ``Content-Type`` in ``headers`` replaces application/json)."""
    import json
    import urllib.error
    import urllib.request

    sent = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=sent | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except json.JSONDecodeError:
            return exc.code, text.decode()


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A real PostgreSQL server in a temp folder on a free port (also used by bench/).

    initdb refuses root, so as root the server runs as the ``postgres`` user.
    """
    import shutil
    import socket
    import subprocess
    import tempfile

    # not under pytest's temp root: that is private to root, and the server runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-pg-"))
    data = folder / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, "initdb", "-D", str(data), "-A", "trust", "-U", "sweeplab"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    server = Postgres(
        port, ("-D", str(data), "-o", options, "-l", str(folder / "log")), tuple(prefix)
    )
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            [*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback: the one its default route uses
    (a UDP connect sends nothing) and the one its host name resolves to."""
    import socket

    found = set()
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        found.add(s.getsockname()[0])
    with contextlib.suppress(OSError):
        found.add(socket.gethostbyname(socket.gethostname()))
    return sorted(a for a in found if not a.startswith("127."))


def assert_loopback_only(port: int) -> None:
    """Nothing answers on ``port`` at any of this machine's other addresses."""
    import socket
    import warnings

    addresses = other_addresses()
    if not addresses:  # a machine with loopback only: nothing else could reach it anyway
        warnings.warn("no address besides loopback: the binding was not checked", stacklevel=2)
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((address, port)) != 0, f"port {port} is open on {address}"


def default_signals() -> None:
    """``preexec_fn`` of a child a test signals: SIGINT, SIGTERM and SIGHUP at their
    default disposition. A background job (``make test &``) starts its children with
    SIGINT ignored, they inherit it, and Python then never raises KeyboardInterrupt."""
    import signal

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid`` (children, theirs…) and their command lines, read
    from /proc (empty where there is none)."""
    parents: dict[int, int] = {}
    lines: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = lines.get(child, "")
                todo.append(child)
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    command: list[str],
    ready_url: str,
    *,
    env: Any = None,
    cwd: Any = None,
    seconds: float = 90,
    wait: bool = True,
) -> Any:
    """Start ``command`` in its own process group; return once ``ready_url`` answers at
    all (a 4xx, e.g. a login prompt, counts), or at once with ``wait=False`` (then call
    ``wait_until_up``). Its output goes to a file (``server_output``; a pipe nobody
    reads would stop a chatty server once it is full) and is in the error if it exits."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="sweeplab-server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=default_signals,
            env=env,
            cwd=cwd,
        )
    proc.output_path = log.name
    if wait:
        wait_until_up(proc, ready_url, seconds)
    return proc


def start_mlflow_server(
    backend_store_uri: str, artifacts: Path, port: int | None = None
) -> tuple[Any, str]:
    """This environment's ``mlflow server`` on ``port`` (default: a free one) of 127.0.0.1,
    with its own artifact store (the compose file's topology): its process and its URL."""
    import sys

    port = port or free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += ["--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(command, f"http://127.0.0.1:{port}/health", seconds=120)
    return proc, f"http://127.0.0.1:{port}"


def server_output(proc: Any) -> str:
    """What a server started by ``start_server`` has printed so far."""
    return Path(proc.output_path).read_text(errors="replace")


def wait_until_up(proc: Any, ready_url: str, seconds: float = 90) -> None:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {server_output(proc)}")
        try:
            urllib.request.urlopen(ready_url, timeout=2).close()
            return
        except urllib.error.HTTPError:  # it answers
            return
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise AssertionError(f"{ready_url} never answered")


def stop_server(proc: Any) -> None:
    """SIGTERM the server's process group (MLflow starts workers of its own); SIGKILL if stuck."""
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def chromium(profile: Path, window: str = "1800,700") -> Any:
    """Headless Chromium through selenium, with a fresh profile and the flags this
    machine needs (no sandbox as root, no GPU, nothing fetched in the background)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={window}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


UI_COLUMNS = ("val_acc", "param_count", "train.lr")


def show_sweep_in_runs_table(driver: Any, sweep: str) -> Any:
    """On MLflow UI's runs page: ``UI_COLUMNS`` shown as columns and the sweep's parent
    run expanded (its trials are nested runs). Returns ``row_of(run name)``: the run's
    row, or None while it is not shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)

    def row_of(name: str) -> Any:  # the run's row (the breadcrumb may name it too)
        for link in driver.find_elements(By.XPATH, f"//a[normalize-space(.)='{name}']"):
            rows = link.find_elements(By.XPATH, "./ancestor::div[@role='row']")
            if rows:
                return rows[0]
        return None

    wait.until(lambda d: row_of(sweep) is not None)
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
        if close.is_displayed():
            close.click()  # MLflow's assistant panel
    buttons = driver.find_elements(By.TAG_NAME, "button")
    next(b for b in buttons if b.text.strip() == "Columns").click()
    dialog = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=dialog]"))
    for name in UI_COLUMNS:
        item = dialog.find_element(By.XPATH, f".//span[normalize-space(text())='{name}']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", item)
        item.click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    row_of(sweep).find_element(
        By.CSS_SELECTOR, "button[data-component-id*=runnamecellrenderer]"
    ).click()  # expand the sweep
    return row_of
