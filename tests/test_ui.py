"""sweeplab ui: MLflow's server on 127.0.0.1 over the store, checked over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_the_store_on_localhost(store: Store) -> None:
    store.prepare()
    tracker = Tracker(store, "ui-check")
    tracker.end_run(tracker.start_run("a-run"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeplab", "ui", "--store", str(store.root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        body: Any = None
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the UI never answered"
        assert "ui-check" in [e["name"] for e in body["experiments"]]
        # bound to loopback only: the port is not open on another local address
        others = [a for a in {socket.gethostbyname(socket.gethostname())} if a != "127.0.0.1"]
        for address in others:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ui_without_a_store_says_so(tmp_path: Any) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab", "ui", "--store", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "run a sweep first" in out.stderr
    assert not (tmp_path / "x").exists()
