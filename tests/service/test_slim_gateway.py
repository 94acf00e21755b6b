"""The gateway installed alone: a fresh environment with only the `gateway` extra (no
torch, MONAI or matplotlib) serves uploads, jobs, datasets and sweep tables, with a
worker of the full installation beside it sharing Redis and the store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from .conftest import base_env
from .helpers import Stack, free_port, post_job, wait_for_job, wait_until
from .test_datasets_sweeps import create_dataset, wait_for_sweep

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway_env(tmp_path_factory) -> Path:
    """A new virtual environment with the project installed as `vesselzip[gateway]`,
    from a copy of the source (the checkout is left as it is)."""
    root = tmp_path_factory.mktemp("slim")
    source = root / "source"
    for part in ["shared", "services"]:
        shutil.copytree(
            ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.pt")
        )
    for part in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / part, source / part)
    # The bundled weights are the worker's: the gateway needs only their settings.
    weights = ROOT / "shared/vesselzip/model/weights"
    for path in weights.glob("*.pt"):
        (source / path.relative_to(ROOT)).write_bytes(path.read_bytes())
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{source}[gateway]"],
        check=True,
        timeout=900,
    )
    return python


def test_a_gateway_without_the_model_stack_serves_jobs_datasets_and_sweep_tables(
    gateway_env, tmp_path, phantoms
):
    for library in ["torch", "monai", "matplotlib"]:
        absent = subprocess.run([gateway_env, "-c", f"import {library}"], capture_output=True)
        assert absent.returncode != 0, f"{library} is installed in the gateway's environment"
    command = gateway_env.parent / "vesselzip"
    for args in [["models"], ["train", "--data", "d.json"], ["segment", "a.nii", "b.nii"]]:
        refused = subprocess.run([command, *args], capture_output=True, text=True, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "install vesselzip[worker]" in refused.stderr, refused.stderr

    from .helpers import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    stack = Stack(server, tmp_path, base_env(tmp_path / "store", server.url))
    port = free_port()
    gateway_dir = tmp_path / "gateway-host"
    gateway_dir.mkdir()
    log = (tmp_path / "slim-gateway.log").open("wb")
    gateway = subprocess.Popen(
        [gateway_env.parent / "vesselzip", "serve", "--workers", "0", "--port", str(port)],
        env=stack._env(None),
        cwd=gateway_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.gateways.append(gateway)
    stack.base_url = url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert gateway.poll() is None, (tmp_path / "slim-gateway.log").read_text()
            try:
                return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 120, "the slim gateway to start", interval_s=0.3)
        stack.start_worker()  # the full installation: torch and all
        stack.wait_ready()
        assert {m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]} >= {"frangi"}

        image, truth = phantoms[0]
        job = post_job(url, image, truth, codec="zfp:rate=8").json()
        assert wait_for_job(url, job["id"])["state"] == "finished"
        assert httpx.get(f"{url}/v1/jobs/{job['id']}/mask").status_code == 200

        dataset = create_dataset(url, phantoms[1:]).json()
        sweep = httpx.post(
            f"{url}/v1/sweeps",
            json={"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "frangi"},
            timeout=30,
        ).json()
        assert wait_for_sweep(url, sweep["id"])["progress"]["state"] == "finished"
        tables = httpx.get(f"{sweep['url']}/tables", timeout=30)
        assert tables.status_code == 200 and tables.json()["settings"]
        figure = httpx.get(f"{sweep['url']}/figures/fixed_rate.png", timeout=30)
        assert figure.status_code == 501 and "vesselzip[figures]" in figure.json()["detail"]
    finally:
        stack.stop()
        server.stop()
        log.close()
    assert "Traceback" not in (tmp_path / "slim-gateway.log").read_text()
    assert sys.executable != str(gateway_env)
