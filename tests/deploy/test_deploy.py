"""The team deployment: compose and Kubernetes files checked against their schemas, and
the same topology started as local processes (PostgreSQL, `mlflow server`, a Ray head)
with a sweep submitted through the CLI.

There is no Docker engine or Kubernetes cluster here: the schemas are the compose
specification's (check-jsonschema's bundled copy) and Kubernetes' own (kubernetes-validate).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import (
    ROOT,
    Postgres,
    free_port,
    start_mlflow_server,
    start_server,
    stop_server,
    sweeplab,
    tiny_spec,
    wait_until_up,
)

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent


def _compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    assert _compose_check(COMPOSE).returncode == 0, _compose_check(COMPOSE).stdout
    # and the check does catch a mistake: a misspelt key in one service
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = _compose_check(broken)
    assert result.returncode != 0 and "healthchek" in result.stdout


def test_compose_has_the_team_services_and_no_secret_in_it() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "ray-head", "ray-gpu-worker"} <= set(services)
    for name in ("postgres", "minio", "mlflow", "ray-head", "ray-gpu-worker"):
        assert "healthcheck" in services[name], name
    assert set(compose["volumes"]) == {"postgres-data", "minio-data", "mlflow-auth"}
    gpu = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    server = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql+psycopg2://" in server
    assert "--artifacts-destination s3://" in server and "--allowed-hosts" in server
    text = COMPOSE.read_text()
    # every password comes from .env and is required: no default to fall back on
    secrets_ = (
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
    )
    for secret in (*secrets_, "RAY_AUTH_TOKEN"):
        assert f"${{{secret}:?" in text
        assert not re.search(rf"\${{{secret}:-", text)
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = (ROOT / "deploy" / "env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert required <= documented
    assert not (ROOT / ".env").exists()


def _validate_k8s(document: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_kubernetes_manifests_match_their_schemas() -> None:
    import kubernetes_validate

    documents = [
        d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())
    ]
    kinds = {d["kind"] for d in documents}
    assert {"RayCluster", "Deployment", "Service"} <= kinds
    for document in documents:
        if document["kind"] != "RayCluster":
            _validate_k8s(document)
            continue
        # A KubeRay custom resource: Kubernetes has no schema for it, but its pods do
        assert document["apiVersion"] == "ray.io/v1"
        import ray

        assert document["spec"]["rayVersion"] == ray.__version__
        spec = document["spec"]
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            template = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "check"},
                "template": group["template"],
            }
            _validate_k8s(template)
        gpu = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]
        assert gpu["limits"]["nvidia.com/gpu"] == "1"
    bad = yaml.safe_load((K8S / "mlflow.yaml").read_text().split("---")[0])
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s(bad)


def _ray(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ray"), *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.distributed
def test_the_compose_topology_as_local_processes_runs_a_sweep(
    postgres: Postgres, tmp_path: Path, write_spec: Any
) -> None:
    """PostgreSQL for MLflow and Optuna, `mlflow server` with its own artifact store, a
    Ray head: a sweep submitted through the CLI runs on Ray and is tracked on the server."""
    from mlflow import MlflowClient

    mlflow_db = postgres.create("topology_mlflow")
    optuna_db = postgres.create("topology_optuna")
    server, tracking = start_mlflow_server(mlflow_db, tmp_path / "artifacts")
    ray_port = free_port()
    # token authentication, as in the compose file: the head and every client share it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = _ray(
        "start",
        "--head",
        f"--port={ray_port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        env=env,
    )
    try:
        assert head.returncode == 0, head.stderr
        spec = write_spec(
            tiny_spec(
                name="team",
                sweep={"trials": 3, "sampler": "random", "scheduler": "asha"},
                tracking={"experiment": "team", "register_as": "team-model"},
            )
        )
        result = sweeplab(
            "sweep",
            str(spec),
            "--backend",
            "ray",
            "--address",
            f"127.0.0.1:{ray_port}",
            "--tracking-uri",
            tracking,
            "--storage",
            optuna_db,
            "--store",
            str(tmp_path / "store"),
            "--quiet",
            timeout=420,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Registered model: team-model version 1" in result.stdout
        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name("team")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        trials = [r for r in runs if "sweeplab.trial_number" in r.data.tags]
        assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
        assert all(r.data.tags.get("sweeplab.ray_node") for r in trials)
        # artifacts went through the server into its artifact store, not the local store
        assert list((tmp_path / "artifacts").rglob("learning_curve.png"))
        assert not (tmp_path / "store" / "artifacts").exists()
        status = sweeplab("status", "team", "--storage", optuna_db, "--store", str(tmp_path))
        assert status.returncode == 0 and "0 running of 3 requested" in status.stdout
    finally:
        _ray("stop", "--force", env=env)
        stop_server(server)
        shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)


# two MLflow servers with authentication (half a minute): CI runs it with the
# distributed tests, to keep `make test` under its 15 minutes
@pytest.mark.distributed
def test_the_deployments_mlflow_login_accepts_no_default_password(tmp_path: Path) -> None:
    """The compose file's MLflow server, started as a local process with the deployment's
    auth settings: it will not start without a password, with MLflow's old default or a
    short one; started with a real one, it refuses every request without it."""
    import base64
    import urllib.error
    import urllib.request

    mlflow = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert "${MLFLOW_AUTH_ADMIN_PASSWORD:?" in mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    ini_file = ROOT / "deploy" / "mlflow-auth.ini"
    assert f"./deploy/{ini_file.name}:/etc/mlflow/auth.ini:ro" in mlflow["volumes"]
    ini = ini_file.read_text()
    assert not re.search(r"^admin_password", ini, re.M)  # only from the environment

    def server(folder: Path, port: int, password: str | None) -> tuple[list[str], dict[str, str]]:
        """The compose file's command with the deployment's auth settings, in ``folder``."""
        folder.mkdir()
        config = folder / "auth.ini"  # the same settings, the users' database in folder
        config.write_text(ini.replace("sqlite:////mlflow-auth/", f"sqlite:///{folder}/"))
        command = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
        env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config)}
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
        if password is not None:
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        return command, env

    refused = [None, "password1234", "admin"]  # unset, MLflow's old default, too short
    good = "a-Team-pass-" + secrets.token_hex(8)
    port = free_port()
    command, env = server(tmp_path / "served", port, good)
    proc = start_server(command, f"http://127.0.0.1:{port}/health", env=env, wait=False)
    procs = []  # started side by side with the good one: each start takes seconds
    for i, pw in enumerate(refused):
        command, env = server(tmp_path / f"refused{i}", free_port(), pw)
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    for pw, refusing in zip(refused, procs, strict=True):
        output, _ = refusing.communicate(timeout=120)
        assert refusing.returncode != 0, f"started with password {pw!r}"
        assert "admin" in output and "password" in output.lower(), output[-2000:]
    wait_until_up(proc, f"http://127.0.0.1:{port}/health")
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"

    def status(user: str | None, password: str = "") -> int:
        request = urllib.request.Request(url)
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        for user, password in [
            (None, ""),
            ("admin", "password1234"),
            ("admin", ""),
            ("admin", "admin"),
            ("admin", good.upper()),
            ("root", good),
        ]:
            assert status(user, password) == 401, (user, password)
        assert status("admin", good) == 200
    finally:
        stop_server(proc)
