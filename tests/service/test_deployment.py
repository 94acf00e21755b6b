"""docker-compose.yml against the Compose specification, and Dockerfile.gpu against
what CI runs. Docker itself is not available where the tests run."""

from __future__ import annotations

import json
import re
import shlex
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
    assert re.search(r"^test: lint$", makefile, re.M)
    assert re.search(r"^lint: install$", makefile, re.M)
    make = [shlex.split(run) for run in runs if run.startswith("make ")]
    assert len(make) == 1 and make[0][1] == "install"
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
