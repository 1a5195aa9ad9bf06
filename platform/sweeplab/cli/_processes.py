"""Servers the command line starts: a port that is taken is said so before anything
starts, and a server in processes of its own (``sweeplab ui``'s MLflow, with its uvicorn
workers and job runner) is stopped whole when the command is stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from types import FrameType

from sweeplab.cli._common import fail

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10.0  # a stopped server's group has this long before it is killed


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; exit 1 with one line when the port is taken
    or the address is not this machine's. The caller serves on it (no race) or closes it
    and starts a server there at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise fail(f"--host {host!r} is not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise fail(
                f"port {port} on {host} is taken: another server listens there; stop it, or "
                "choose another with --port"
            ) from None
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def serve_group(
    command: list[str],
    *,
    env: dict[str, str] | None,
    ready_url: str,
    on_ready: Callable[[], None],
    ready_seconds: float = 180.0,
) -> int:
    """Run ``command`` as a process group of its own until it ends or this process gets
    SIGINT, SIGTERM or SIGHUP; then the whole group is stopped (SIGTERM, SIGKILL after
    ``GRACE_SECONDS``). ``on_ready`` is called once ``ready_url`` answers. Returns the
    exit status: the server's, or 128 + the signal that stopped this one."""
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    got: list[int] = []
    with _signals_to(got):
        try:
            _wait_until_answering(proc, ready_url, ready_seconds, got, on_ready)
            while proc.poll() is None and not got:
                time.sleep(0.2)
        finally:
            _stop_group(proc)
    if got:
        return 128 + got[0]
    return proc.returncode or 0


@contextlib.contextmanager
def _signals_to(got: list[int]) -> Iterator[None]:
    """While inside: the stopping signals are recorded in ``got`` instead of raising."""

    def record(signum: int, _: FrameType | None) -> None:
        got.append(signum)

    before = {s: signal.signal(s, record) for s in STOPPING}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _wait_until_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    seconds: float,
    got: list[int],
    on_ready: Callable[[], None],
) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while proc.poll() is None and not got and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                on_ready()
                return
        except urllib.error.HTTPError:
            on_ready()  # it answers, if not with 200
            return
        except OSError:
            time.sleep(0.3)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's group, SIGKILL to what is left after the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent
    proc.wait()
