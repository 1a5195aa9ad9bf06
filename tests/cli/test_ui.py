"""sweeplab ui: MLflow's server on 127.0.0.1 over the store, checked over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import (
    ROOT,
    UI_COLUMNS,
    Finished,
    assert_loopback_only,
    free_port,
    show_sweep_in_runs_table,
    start_server,
    stop_server,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def served(finished: Finished) -> Iterator[int]:
    """One ``sweeplab ui`` on the finished sweep's store for the tests that only read it
    (its start is most of such a test's time); yields its port."""
    port = free_port()
    proc = _ui(str(finished.store.root), port, "--allowed-hosts", f"ui.example,127.0.0.1:{port}")
    yield port
    stop_server(proc)


def test_ui_serves_the_store_on_localhost_and_refuses_hostile_requests(
    finished: Finished, served: int
) -> None:
    """Bound to 127.0.0.1; with --allowed-hosts, a foreign Host header is refused (DNS
    rebinding); artifact paths that try to leave the store are refused."""
    port = served
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/2.0/mlflow/experiments/search?max_results=10"
    status, body = _get(url)
    assert status == 200 and "finished" in [e["name"] for e in json.loads(body)["experiments"]]
    assert_loopback_only(port)  # the port is not open on this machine's other addresses
    assert _get(url, {"Host": "ui.example"})[0] == 200
    for foreign in ("attacker.example", "127.0.0.1.attacker.example", "localhost.evil"):
        status, body = _get(url, {"Host": foreign})
        assert status == 403 and b"Invalid Host header" in body, foreign
    run = _a_trial_run(finished)
    assert _get(f"{base}/get-artifact?path=learning_curve.png&run_uuid={run}")[0] == 200
    for path in TRAVERSALS:  # the store's database, the system's passwords
        for url in (
            f"{base}/get-artifact?path={path}&run_uuid={run}",
            f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run}&path={path}",
            f"{base}/model-versions/get-artifact?path={path}&name=iris&version=1",
            f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}",
        ):
            status, body = _get(url)
            assert status in (400, 403, 404), (url, status)
            assert b"SQLite format" not in body and b"root:" not in body, url


TRAVERSALS = [
    "../../../mlflow.db",
    "%2e%2e/%2e%2e/%2e%2e/mlflow.db",
    "..%2f..%2f..%2fmlflow.db",
    "/etc/passwd",
    "learning_curve.png/../../../../mlflow.db",
]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _a_trial_run(finished: Finished) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(finished.store.tracking_uri)
    exp = client.get_experiment_by_name(finished.experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], "tags.`sweeplab.trial_number` = '0'")
    return str(runs[0].info.run_id)


def test_ui_without_a_store_says_so(tmp_path: Any) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab", "ui", "--store", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "run a sweep first" in out.stderr
    assert not (tmp_path / "x").exists()


def _ui(store_root: str, port: int, *extra: str, cwd: Any = None, env: Any = None) -> Any:
    command = [sys.executable, "-m", "sweeplab", "ui", "--store", store_root, "--port", str(port)]
    return start_server([*command, *extra], f"http://127.0.0.1:{port}/health", env=env, cwd=cwd)


def test_auth_asks_for_a_login(tmp_path: Any, finished: Finished) -> None:
    import shutil as sh

    root = tmp_path / "store"
    sh.copytree(finished.store.root, root)
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": "a-Long-pass-42"}
    env.pop("MLFLOW_AUTH_CONFIG_PATH", None)
    port = free_port()
    proc = _ui(str(root), port, "--auth", cwd=tmp_path, env=env)
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=10)
        assert denied.value.code == 401
        request = urllib.request.Request(url)
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(b"admin:a-Long-pass-42").decode()
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "finished" in [e["name"] for e in json.loads(response.read())["experiments"]]
    finally:
        stop_server(proc)
    assert (root / "basic_auth.db").is_file() and not (tmp_path / "basic_auth.db").exists()


def test_exposing_the_ui_warns_and_shows_how_to_lock_it(tmp_path: Any) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeplab",
            "ui",
            "--store",
            str(tmp_path / "x"),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
    )
    # no store: it stops before starting anything, but only after the checks
    assert out.returncode == 1
    first_start = subprocess.run(
        [sys.executable, "-m", "sweeplab", "ui", "--store", str(tmp_path / "x"), "--auth"],
        capture_output=True,
        text=True,
    )
    assert first_start.returncode == 1 and "run a sweep first" in first_start.stderr


def _browser(tmp_path: Any) -> Any:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)"
        )
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from tests.helpers import chromium

    return chromium(tmp_path / "chromium-profile")


def test_the_browser_shows_the_sweep_runs_with_their_metrics(
    finished: Finished, served: int, tmp_path: Any
) -> None:
    """Headless Chromium on ``sweeplab ui``: the sweep's parent run, its trials nested under
    it, and their metrics as columns; then the sweep's report inside the UI.
    SWEEPLAB_SCREENSHOT=path keeps the screenshot."""
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path)
    client = MlflowClient(finished.store.tracking_uri)
    experiment = client.get_experiment_by_name(finished.experiment)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`sweeplab.sweep` = '{finished.sweep}'"
    )
    trials = [r for r in runs if "sweeplab.trial_number" in r.data.tags]
    assert len(trials) == 3
    port = served
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(
            f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
            "?workflowType=machine_learning"
        )

        row_of = show_sweep_in_runs_table(driver, finished.sweep)
        wait.until(lambda d: all(row_of(t.info.run_name) is not None for t in trials))
        grid = driver.find_element(By.CSS_SELECTOR, ".ag-root").text
        for header in UI_COLUMNS:
            assert header in grid
        for trial in trials:
            value = trial.data.metrics["val_acc"]  # as JavaScript prints a number
            assert (str(int(value)) if value.is_integer() else repr(value)) in grid.split("\n")
            assert trial.data.params["train.lr"] in grid
        shot = tmp_path / "ui.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("SWEEPLAB_SCREENSHOT"):
            shutil.copy(shot, ROOT / os.environ["SWEEPLAB_SCREENSHOT"])
        _the_report_opens_in_the_ui(driver, port, experiment.experiment_id, finished)
    finally:
        driver.quit()


def _the_report_opens_in_the_ui(
    driver: Any, port: int, experiment_id: str, finished: Finished
) -> None:
    """The parent run's report.html in MLflow's artifact view (a sandboxed frame):
    plotly.js unpacks offline, every figure is drawn, and every trial is in the table."""
    import optuna
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study = optuna.load_study(study_name=finished.sweep, storage=finished.store.storage_url)
    parent = study.user_attrs["sweeplab.parent_run_id"]
    wait = WebDriverWait(driver, 60)
    driver.get(
        f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{parent}/artifacts/report.html"
    )
    frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe.mlflow-html-iframe"))
    driver.switch_to.frame(frame)
    body = wait.until(lambda d: d.find_element(By.TAG_NAME, "body"))
    status = driver.find_element(By.ID, "status")
    wait.until(lambda d: body.get_attribute("data-drawn") or status.text)
    assert status.text == ""
    figures = driver.find_elements(By.CSS_SELECTOR, "[data-figure]")
    assert int(body.get_attribute("data-drawn") or 0) == len(figures) >= 3
    for figure in figures:  # plotly drew an SVG in each
        assert figure.find_elements(By.CSS_SELECTOR, "svg.main-svg")
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-trial]")
    numbers = sorted(int(r.get_attribute("data-trial") or -1) for r in rows)
    assert numbers == [t.number for t in study.trials]
    assert "val_acc" in driver.find_element(By.TAG_NAME, "table").text
    # the run links follow the UI the report is in (this port, not sweeplab ui's default)
    links = driver.find_elements(By.CSS_SELECTOR, "a[data-run]")
    assert links and all(
        (a.get_attribute("href") or "").startswith(
            f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/"
        )
        for a in links
    ), [a.get_attribute("href") for a in links]
    driver.switch_to.default_content()


def test_ui_says_when_it_answers_and_takes_mlflow_with_it_when_stopped(
    finished: Finished,
) -> None:
    """The URL is printed once MLflow answers; a second ui on the same port is refused in
    one line; by default MLflow runs as one server process (no extra uvicorn workers, no
    job runner); SIGTERM stops it (the port is free again) and exits 143; a port out of
    range exits 2."""
    import signal
    import socket
    import time

    from tests.helpers import descendants, server_output

    root = str(finished.store.root)
    out_of_range = subprocess.run(
        [sys.executable, "-m", "sweeplab", "ui", "--store", root, "--port", "70000"],
        capture_output=True,
        text=True,
    )
    assert out_of_range.returncode == 2 and "Traceback" not in out_of_range.stderr
    port = free_port()
    proc = _ui(root, port)
    try:
        line = f"MLflow UI on http://127.0.0.1:{port}/#/experiments"
        deadline = time.monotonic() + 30
        while line not in server_output(proc) and time.monotonic() < deadline:
            time.sleep(0.2)  # it answered /health: the line follows at once
        assert line in server_output(proc), server_output(proc)[-3000:]
        below = descendants(proc.pid)
        assert any("mlflow" in command for command in below.values()), below
        assert len(below) == 2, below  # `mlflow ui` and the uvicorn it serves with
        taken = subprocess.run(
            [sys.executable, "-m", "sweeplab", "ui", "--store", root, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 1, taken.stderr
        assert taken.stderr.strip().splitlines() == [
            f"error: port {port} on 127.0.0.1 is taken: another server listens there; stop "
            "it, or choose another with --port"
        ]
        proc.send_signal(signal.SIGTERM)  # to sweeplab ui alone, as a supervisor does
        assert proc.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in below):
            time.sleep(0.2)
        assert [pid for pid in below if _alive(pid)] == []
        with socket.socket() as sock:  # nothing listens there any more
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            stop_server(proc)


def _alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
