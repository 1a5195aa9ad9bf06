"""sweeplab serve over real HTTP: predictions, metadata, every bad request, --follow-alias."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sweeplab.registry.evaluate import held_out, predict
from sweeplab.registry.models import ModelRef, client_for, load_torch, resolve
from sweeplab.registry.promote import promote
from sweeplab.spec import spec_from_dict
from tests.helpers import (
    Finished,
    assert_loopback_only,
    call,
    free_port,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def served(finished: Finished) -> Iterator[tuple[str, Finished]]:
    """``sweeplab serve iris@served --follow-alias`` on a free port."""
    promote(finished.store.tracking_uri, finished.model, finished.good, "served")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sweeplab", "serve", "iris@served", "--port", str(port)]
    command += ["--store", str(finished.store.root), "--follow-alias", "--poll-seconds", "0.5"]
    command += ["--max-batch", "50"]
    proc = start_server(command, f"{base}/health")
    yield base, finished
    stop_server(proc)


def _rows(finished: Finished, version: int) -> np.ndarray:
    client = client_for(finished.store.tracking_uri)
    mv = client.get_model_version(finished.model, str(version))
    return held_out(spec_from_dict(json.loads(mv.tags["sweeplab.spec"]))).x


def test_predictions_equal_the_in_process_model(served: tuple[str, Finished]) -> None:
    base, finished = served
    rows = _rows(finished, finished.good)
    status, body = call(f"{base}/predict", json.dumps({"rows": rows.tolist()}).encode())
    assert status == 200 and body["version"] == finished.good
    client = client_for(finished.store.tracking_uri)
    model = load_torch(finished.store.tracking_uri, resolve(client, ModelRef("iris", "served")))
    expected = predict(model, rows)
    np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6, atol=1e-7)
    # the data's own class values (iris' species), the output indices alongside
    assert body["label_indices"] == expected.argmax(axis=1).tolist()
    species = ["setosa", "versicolor", "virginica"]
    assert body["labels"] == [species[i] for i in body["label_indices"]]
    # one row without the batch wrapper
    status, one = call(f"{base}/predict", json.dumps(rows[0].tolist()).encode())
    assert status == 200 and one["labels"] == body["labels"][:1]


def test_requests_that_wait_for_the_model_share_a_call_and_get_their_own_rows(
    served: tuple[str, Finished],
) -> None:
    """24 clients at once, 96 requests of 1 to 5 rows: fewer model calls than requests
    (those that waited went together), and each answer is its own rows' predictions, as
    the same request alone gets them."""
    from concurrent.futures import ThreadPoolExecutor

    base, finished = served
    rows = _rows(finished, finished.good)
    bodies = [
        json.dumps({"rows": rows[i % 20 : i % 20 + 1 + i % 5].tolist()}).encode() for i in range(96)
    ]
    before = call(f"{base}/metadata")[1]["batching"]
    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(lambda body: call(f"{base}/predict", body), bodies))
    after = call(f"{base}/metadata")[1]["batching"]
    calls, requests = (after[k] - before[k] for k in ("model_calls", "requests"))
    assert requests == 96 and calls < requests, after
    for body, (status, answer) in zip(bodies, together, strict=True):
        alone = call(f"{base}/predict", body)[1]
        assert status == 200 and len(answer["predictions"]) == len(json.loads(body)["rows"])
        if answer["version"] == alone["version"]:  # --follow-alias may move it meanwhile
            np.testing.assert_allclose(answer["predictions"], alone["predictions"], atol=1e-6)
            assert answer["labels"] == alone["labels"]


def test_metadata_and_health(served: tuple[str, Finished]) -> None:
    base, finished = served
    status, meta = call(f"{base}/metadata")
    assert status == 200
    assert (meta["name"], meta["alias"], meta["version"]) == ("iris", "served", finished.good)
    assert meta["lineage"]["sweep"] == finished.sweep
    assert meta["lineage"]["spec"]["data"]["dataset"] == "iris"
    assert meta["lineage"]["data_hash"]
    assert meta["input_schema"][0]["tensor-spec"]["shape"] == [-1, 4]
    assert meta["output"] == "probabilities" and meta["max_batch"] == 50
    assert call(f"{base}/health") == (200, {"status": "ok", "version": finished.good})


BAD = [
    (b'{"rows": [[1, 2, 3]]}', 422, "expected 4 numbers per row"),
    (b'{"rows": [[1, "a", 3, 4]]}', 422, 'column 1 is "a", expected a number'),
    (b'{"rows": [[1, true, 3, 4]]}', 422, "expected a number"),
    (b'{"rows": [[1, NaN, 3, 4]]}', 422, "expected a finite number"),
    (b'{"rows": [[1, 2, 3, 4], 5]}', 422, "row 1 is a int"),
    (b'{"rows": []}', 422, "non-empty list"),
    (b'{"inputs": [[1, 2, 3, 4]]}', 422, "missing field 'rows'"),
    (b'{"rows": [[1, 2,', 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (json.dumps({"rows": [[1, 2, 3, 4]] * 51}).encode(), 413, "at most 50 per request"),
    # nested deeper than the JSON parser's recursion limit: refused before it parses
    (b"[" * 1000 + b"]" * 1000, 400, "nests more than 8 levels deep"),
    (b'{"rows": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "nests more than 8"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD)
def test_each_bad_request_gets_its_4xx_and_the_service_keeps_serving(
    served: tuple[str, Finished], body: bytes, status: int, message: str
) -> None:
    base, _ = served
    got, answer = call(f"{base}/predict", body)
    assert got == status and message in answer["error"]
    ok, good = call(f"{base}/predict", b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}')
    assert ok == 200 and len(good["predictions"]) == 1


def test_wrong_routes_methods_and_hosts(served: tuple[str, Finished]) -> None:
    base, _ = served
    assert call(f"{base}/nope")[0] == 404
    assert call(f"{base}/predict")[0] == 405  # GET
    assert call(f"{base}/health", headers={"Host": "attacker.example"})[0] == 400
    assert call(f"{base}/health", headers={"Host": "localhost"})[0] == 200
    assert_loopback_only(int(base.rsplit(":", 1)[1]))  # served without --host
    # no route reads a file: paths that try to leave get the JSON 404, never a file
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/predict/../../mlflow.db"):
        status, body = call(base + path)
        assert status == 404 and "no route" in body["error"], path


def test_follow_alias_reloads_when_the_alias_moves(served: tuple[str, Finished]) -> None:
    base, finished = served
    uri = finished.store.tracking_uri
    promote(uri, finished.model, finished.bad, "served", force=True)
    try:
        deadline = time.monotonic() + 60
        while call(f"{base}/health")[1]["version"] != finished.bad:
            assert time.monotonic() < deadline, "the service never moved to the new version"
            time.sleep(0.3)
        status, body = call(f"{base}/predict", b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}')
        assert status == 200 and body["version"] == finished.bad
        assert call(f"{base}/metadata")[1]["version"] == finished.bad
    finally:
        promote(uri, finished.model, finished.good, "served")


def test_mlflow_models_serve_gives_the_same_predictions(finished: Finished) -> None:
    """The version is a standard pyfunc model: MLflow's own server answers the same."""
    port = free_port()
    uri = finished.store.tracking_uri
    version = client_for(uri).get_model_version(finished.model, str(finished.good))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", version.source]
    command += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    proc = start_server(command, f"http://127.0.0.1:{port}/health", env=env)
    try:
        rows = _rows(finished, finished.good)
        status, body = call(
            f"http://127.0.0.1:{port}/invocations",
            json.dumps({"inputs": rows.tolist()}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200
        expected = predict(load_torch(uri, version), rows)
        np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6, atol=1e-7)
    finally:
        stop_server(proc)


def test_serve_mistakes_exit_with_a_message(finished: Finished, tmp_path: Any) -> None:
    from tests.helpers import sweeplab

    root = str(finished.store.root)
    cases = [
        (["serve", "iris/3/x", "--store", root], 2, "NAME@ALIAS, NAME/VERSION"),
        (["serve", "iris/1", "--follow-alias", "--store", root], 2, "--follow-alias needs"),
        (["serve", "iris@nosuch", "--store", root], 1, "does not exist"),
        (["serve", "iris@champion", "--store", str(tmp_path / "none")], 1, "run a sweep first"),
    ]
    for args, code, message in cases:
        out = sweeplab(*args)
        assert out.returncode == code and message in out.stderr, (args, out.stderr)


def test_a_port_in_use_is_said_to_be_taken(served: tuple[str, Finished]) -> None:
    from tests.helpers import sweeplab

    base, finished = served
    port = base.rsplit(":", 1)[1]
    out = sweeplab("serve", "iris@served", "--port", port, "--store", str(finished.store.root))
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is taken: another server listens there; stop it, "
        "or choose another with --port"
    ]
    assert out.stdout == ""
    assert call(f"{base}/health")[0] == 200  # the server there keeps serving


def test_predict_takes_json_only(served: tuple[str, Finished]) -> None:
    """A form or text/plain body is what a web page can post to 127.0.0.1 without a CORS
    preflight: refused with 415, whatever it holds."""
    base, _ = served
    row = b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}'
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, answer = call(f"{base}/predict", row, headers={"Content-Type": kind})
        assert status == 415 and "takes application/json" in answer["error"], kind
    json_kind = {"Content-Type": "application/json; charset=utf-8"}
    assert call(f"{base}/predict", row, headers=json_kind)[0] == 200


def test_with_a_token_only_requests_that_carry_it_are_answered(finished: Finished) -> None:
    """The token from the environment (kept out of the process list): 401 without it or
    with another, and the refused body is not in the server's log; /health stays open."""
    from tests.helpers import server_output, sweeplab

    token = "s3cret-team-token-0123456789"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sweeplab", "serve", "iris@served", "--port", str(port)]
    command += ["--store", str(finished.store.root)]
    promote(finished.store.tracking_uri, finished.model, finished.good, "served")
    proc = start_server(
        command, f"{base}/health", env={**os.environ, "SWEEPLAB_SERVE_TOKEN": token}
    )
    secret_row = b'{"rows": [[5.1, 3.5, 1.4, 0.2]], "marker": "a-body-never-logged"}'
    try:
        assert call(f"{base}/health")[0] == 200
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": token}):
            status, answer = call(f"{base}/predict", secret_row, headers=headers)
            assert status == 401 and "Authorization: Bearer" in answer["error"], headers
            assert call(f"{base}/metadata", headers=headers)[0] == 401
        good = {"Authorization": f"Bearer {token}"}
        status, answer = call(f"{base}/predict", secret_row, headers=good)
        assert status == 200 and answer["version"] == finished.good
        assert call(f"{base}/metadata", headers=good)[0] == 200
    finally:
        stop_server(proc)
    assert "a-body-never-logged" not in server_output(proc)
    assert token not in server_output(proc)
    short = sweeplab(
        "serve", "iris@served", "--token", "short", "--store", str(finished.store.root)
    )
    assert short.returncode == 2 and "--token must be at least 16 characters" in short.stderr
