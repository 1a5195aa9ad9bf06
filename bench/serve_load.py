"""sweeplab serve under load: concurrent clients on 127.0.0.1, and MLflow's own server
beside it on the same model.

The default sweep (experiments/mlp_digits.yaml) registers version 1 of mlp-digits and
`sweeplab train` version 2. Then, each for --seconds (30) per row, N clients that each
send one request after another (one digits row each, kept-alive connections):

    sweeplab serve mlp-digits@bench         8 and 64 clients, batched (the default)
    ... --no-batch                          the same, each request its own model call
    ... --follow-alias, the alias moved     64 clients while the alias goes from one
        every 5 s                           version to the other every 5 s
    ... --token                             a request without the token: 401
    mlflow models serve (version 1)         8 and 64 clients: the anchor

Each row: requests per second, p50 and p99 latency, failed requests (not 200, or no
answer). Target: 0 failed requests while the alias moves; 401 without the token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"
MODEL = "mlp-digits"
ALIAS = "bench"
TOKEN = "bench-token-0123456789abcdef"


@dataclass
class Load:
    """What the clients of one row saw."""

    seconds: float
    latencies: list[float] = field(default_factory=list)  # of the answered requests
    failed: int = 0
    versions: set[int] = field(default_factory=set)  # sweeplab serve's answers say theirs

    def line(self, label: str, clients: int) -> str:
        done = len(self.latencies)
        if not done:
            return f"{label:<44} {clients:>3} clients: no request answered, {self.failed} failed"
        q = statistics.quantiles(self.latencies, n=100) if done > 1 else self.latencies * 99
        return (
            f"{label:<44} {clients:>3} clients: {done / self.seconds:7.1f} req/s, "
            f"p50 {q[49] * 1000:6.1f} ms, p99 {q[98] * 1000:6.1f} ms, {self.failed} failed"
            + (f", versions {sorted(self.versions)}" if self.versions else "")
        )


async def _load(
    url: str, body: bytes, clients: int, seconds: float, headers: dict[str, str]
) -> Load:
    """``clients`` tasks, each POSTing ``body`` to ``url`` one request after another.

    aiohttp (installed with Ray's dashboard, and in the dev extra) drives them from one
    event loop: a thread per client would spend the 2 cores on switching between them.
    """
    import aiohttp

    load = Load(seconds)
    deadline = time.perf_counter() + seconds
    sent = {"Content-Type": "application/json", **headers}
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=sent) as response:
                    answer = await response.read()
                    if response.status != 200:
                        load.failed += 1
                        continue
            except (TimeoutError, aiohttp.ClientError):
                load.failed += 1
                continue
            load.latencies.append(time.perf_counter() - started)
            version = json.loads(answer).get("version") if b'"version"' in answer else None
            if isinstance(version, int):
                load.versions.add(version)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return load


def load(
    url: str, body: bytes, clients: int, seconds: float, headers: dict[str, str] | None = None
) -> Load:
    return asyncio.run(_load(url, body, clients, seconds, headers or {}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sweeplab(*args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"sweeplab {' '.join(args)} failed:\n{out.stderr[-2000:]}")


class Server:
    """A server process in its own group, up once ``health`` answers; stopped on exit."""

    def __init__(self, command: list[str], health: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{command[:4]} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(health, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"{command[:4]} did not answer {health}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def status_of(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def moving(tracking_uri: str, every: float, stop: threading.Event) -> Callable[[], int]:
    """Move the alias between versions 1 and 2 every ``every`` seconds until ``stop``;
    returns how many moves were made."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    moves = [0]

    def run() -> None:
        while not stop.wait(every):
            moves[0] += 1
            client.set_registered_model_alias(MODEL, ALIAS, str(1 + moves[0] % 2))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return lambda: moves[0]


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def plain_rows(serve: list[str], base: str, body: bytes, seconds: float) -> None:
    """8 and 64 clients, with the requests that wait for the model batched (the default)
    and each request on its own (--no-batch), side by side."""
    rates: dict[tuple[str, int], float] = {}
    for flag in ("", "--no-batch"):
        label = f"sweeplab serve {flag}".strip()
        with Server([*serve, *([flag] if flag else [])], f"{base}/health"):
            for clients in (8, 64):
                result = load(f"{base}/predict", body, clients, seconds)
                rates[flag, clients] = len(result.latencies) / seconds
                print(result.line(label, clients), flush=True)
            if not flag:
                batching = json.loads(urllib.request.urlopen(f"{base}/metadata").read())
                calls, requests = batching["batching"].values()
                print(f"  requests per model call, batched: {requests / max(calls, 1):.2f}")
    for clients in (8, 64):
        ratio = rates["", clients] / max(rates["--no-batch", clients], 1e-9)
        print(f"  batched ÷ --no-batch, {clients} clients: {ratio:.2f}x req/s")


def follow_row(serve: list[str], base: str, body: bytes, seconds: float, store: Path) -> None:
    """64 clients while the alias moves every 5 s (1 s when tiny)."""
    stop = threading.Event()
    with Server([*serve, "--follow-alias", "--poll-seconds", "1"], f"{base}/health"):
        moves = moving(f"sqlite:///{store / 'mlflow.db'}", min(5.0, seconds / 2), stop)
        result = load(f"{base}/predict", body, 64, seconds)
        stop.set()
    print(result.line(f"sweeplab serve --follow-alias, moved {moves()}x", 64), flush=True)
    met = result.failed == 0 and len(result.versions) == 2
    print(f"  target: 0 failed while the alias moves, both versions served: {verdict(met)}")


def token_row(serve: list[str], base: str, body: bytes, seconds: float) -> None:
    with Server([*serve, "--token", TOKEN], f"{base}/health"):
        without = status_of(f"{base}/predict", body, {})
        wrong = status_of(f"{base}/predict", body, {"Authorization": "Bearer nope"})
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        result = load(f"{base}/predict", body, 8, seconds, bearer)
    print(result.line("sweeplab serve --token", 8), flush=True)
    met = (without, wrong) == (401, 401)
    said = f"without the token {without}, with a wrong one {wrong}"
    print(f"  target: 401 for a request without the token ({said}): {verdict(met)}")


def anchor_rows(source: str, body: bytes, seconds: float, store: Path) -> None:
    """``mlflow models serve`` on the same version: MLflow's own scoring server."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", source]
    command += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
    }
    with Server(command, f"http://127.0.0.1:{port}/health", env=env):
        for clients in (8, 64):
            result = load(f"http://127.0.0.1:{port}/invocations", body, clients, seconds)
            print(result.line("mlflow models serve (the anchor)", clients), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--seconds", type=float, default=30.0, help="each row's length")
    args = parser.parse_args()
    seconds = 2.0 if args.tiny else args.seconds
    from mlflow import MlflowClient
    from sklearn.datasets import load_digits

    row = load_digits().data[:1].tolist()
    ours, theirs = json.dumps({"rows": row}).encode(), json.dumps({"inputs": row}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        sweeplab("sweep", str(SPEC), "-q", "--store", tmp, *(TINY_SWEEP if args.tiny else []))
        sweeplab(
            "train", str(SPEC), "--register", MODEL, "--store", tmp, "--set", "train.max_epochs=5"
        )
        client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
        client.set_registered_model_alias(MODEL, ALIAS, "1")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "sweeplab", "serve", f"{MODEL}@{ALIAS}"]
        serve += ["--port", str(port), "--store", tmp]
        print(f"model: {MODEL}, version 1 (the default sweep's) and 2 (`sweeplab train`'s)")
        print(
            f"each row {seconds:.0f} s, one digits row a request; clients and server share 2 cores"
        )
        plain_rows(serve, base, ours, seconds)
        follow_row(serve, base, ours, seconds, store)
        client.set_registered_model_alias(MODEL, ALIAS, "1")
        token_row(serve, base, ours, seconds)
        anchor_rows(client.get_model_version(MODEL, "1").source, theirs, seconds, store)


if __name__ == "__main__":
    main()
