"""The docker/ files, checked without a Docker engine: hadolint on both Dockerfiles, and the
compose file against a schema of the Compose keys it may use plus cross-checks of our own
(services referred to exist, build files exist, settings names are real).

``docker compose config`` would be the stronger check, but the compose plugin is not
installed here, so the structure is checked with ``jsonschema`` against the schema below
(written for this file from the Compose specification's service keys, not a copy of it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "api.Dockerfile", DOCKER / "worker-gpu.Dockerfile"]
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")

_ENV = {"oneOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
                  {"type": "array", "items": {"type": "string"}}]}
_CMD = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_HEALTH = {"type": "object", "additionalProperties": False, "properties": {
    "test": _CMD, "interval": {"type": "string"}, "timeout": {"type": "string"}, "retries": {"type": "integer"},
    "start_period": {"type": "string"}, "disable": {"type": "boolean"}}}
_DEPENDS = {"oneOf": [{"type": "array", "items": {"type": "string"}},
                      {"type": "object", "additionalProperties": {
                          "type": "object", "required": ["condition"], "additionalProperties": False,
                          "properties": {"condition": {"enum": ["service_started", "service_healthy",
                                                                "service_completed_successfully"]},
                                         "restart": {"type": "boolean"}, "required": {"type": "boolean"}}}}]}
_DEVICE = {"type": "object", "additionalProperties": False, "required": ["capabilities"], "properties": {
    "driver": {"type": "string"}, "count": {"oneOf": [{"type": "integer"}, {"const": "all"}]},
    "device_ids": {"type": "array", "items": {"type": "string"}},
    "capabilities": {"type": "array", "items": {"type": "string"}}}}
SERVICE = {
    "type": "object", "additionalProperties": False, "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
    "properties": {
        "image": {"type": "string"},
        "build": {"type": "object", "additionalProperties": False, "required": ["context"], "properties": {
            "context": {"type": "string"}, "dockerfile": {"type": "string"},
            "args": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "command": _CMD, "entrypoint": _CMD, "environment": _ENV, "env_file": _CMD,
        "ports": {"type": "array", "items": {"type": "string", "pattern": r"^(\d+:)?\d+(/(tcp|udp))?$"}},
        "volumes": {"type": "array", "items": {"type": "string"}},
        "depends_on": _DEPENDS, "healthcheck": _HEALTH, "shm_size": {"type": ["string", "integer"]},
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
        "deploy": {"type": "object", "additionalProperties": False, "properties": {
            "replicas": {"type": "integer"},
            "resources": {"type": "object", "additionalProperties": False, "properties": {
                "limits": {"type": "object"},
                "reservations": {"type": "object", "additionalProperties": False, "properties": {
                    "cpus": {"type": ["string", "number"]}, "memory": {"type": "string"},
                    "devices": {"type": "array", "items": _DEVICE}}}}}}},
    },
}
COMPOSE = {
    "type": "object", "required": ["services"], "additionalProperties": False,
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string"},
        "services": {"type": "object", "minProperties": 1, "additionalProperties": SERVICE},
        "volumes": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "networks": {"type": "object"},
    },
}
EXTERNAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RAY_AUTH_MODE",
                "RAY_AUTH_TOKEN", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "MINIO_ROOT_USER",
                "MINIO_ROOT_PASSWORD"}
"""Variables read by Ray, boto/s3fs, PostgreSQL and MinIO rather than by surfrecon."""


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())  # merges the x- anchors (<<)


def _setting_env_names() -> set[str]:
    from pydantic import AliasChoices

    from service.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(alias.choices) if isinstance(alias, AliasChoices) else {f"SURFRECON_{name.upper()}"}
    return names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    out = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint is live: an unpinned base image and sudo are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN sudo pip install torch\n")
    out = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and "DL3006" in out.stdout and "DL3004" in out.stdout


def test_dockerfiles_pin_what_the_task_needs():
    api, gpu = (p.read_text() for p in DOCKERFILES)
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim", api, re.MULTILINE)
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in api
    assert re.search(r"^USER 10001", api, re.MULTILINE) and "HEALTHCHECK" in api and "/healthz" in api
    assert "cudnn-devel" in gpu and re.search(r"ARG TORCH_INDEX=\S+/whl/cu\d+", gpu)
    assert "ARG TCNN_CUDA_ARCHITECTURES" in gpu and "tiny-cuda-nn" in gpu
    assert "ray start --address" in gpu and re.search(r"^USER 10001", gpu, re.MULTILINE)
    # One Python minor version across the cluster, and one set of package versions: both images
    # run the same install script under constraints.txt (tests/test_images.py runs it too) and
    # pin no Python package of their own; the web page's three.js comes from a node stage.
    assert "PYTHON_VERSION=3.12" in api and "ubuntu24.04" in gpu  # Ubuntu 24.04's python3 is 3.12
    for text in (api, gpu):
        assert re.search(r"^RUN bash docker/install\.sh /opt/venv \.", text, re.MULTILINE)
        assert "COPY pyproject.toml setup.py README.md constraints.txt ./" in text
        assert re.search(r"^FROM \$\{NODE_IMAGE\} AS web$", text, re.MULTILINE) and "RUN npm ci" in text
        assert "COPY --from=web /web/node_modules/three ./service/web/node_modules/three" in text
        assert not re.search(r"(ray|torch)(\[[a-z,]+\])?==|RAY_VERSION|TORCH_VERSION", text)


def test_compose_structure(compose):
    jsonschema.validate(compose, COMPOSE)
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "ray-head", "api", "dispatcher", "worker-gpu"} <= set(services)
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "test" in services[dep].get("healthcheck", {}), (name, dep)
        if "build" in svc:
            assert (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert src.startswith((".", "/")) or src in compose["volumes"], (name, vol)
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert services["api"]["environment"]["SURFRECON_DISPATCHER"] == "external"
    assert services["dispatcher"]["command"] == ["surfrecon", "dispatcher"]
    assert services["dispatcher"]["environment"]["RAY_ADDRESS"] == services["worker-gpu"]["environment"]["RAY_ADDRESS"]


def test_compose_uses_real_settings(compose):
    """Every surfrecon variable set in the compose file is a field of ``Settings`` (so a typo
    cannot silently fall back to a default), and the scaled-out backends are selected."""
    settings = _setting_env_names()
    used = set()
    for svc in compose["services"].values():
        used |= set(svc.get("environment") or {})
    ours = {n for n in used if n not in EXTERNAL_ENV}
    assert ours and ours <= settings, ours - settings
    env = compose["services"]["dispatcher"]["environment"]
    assert env["SURFRECON_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["SURFRECON_ARTIFACT_URL"].startswith("s3://") and env["SURFRECON_S3_ENDPOINT_URL"]


def test_readme_settings_exist():
    """Settings named in the README exist (client and test variables are defined elsewhere)."""
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\b(SURFRECON_[A-Z0-9_]+|RAY_ADDRESS)\b", readme))
    source = "\n".join(p.read_text() for p in (ROOT / "service").glob("*.py"))
    source += "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))  # test-only variables
    unknown = {n for n in named - _setting_env_names() if n not in source}
    assert named and not unknown, unknown


def test_dockerignore_keeps_the_build_context_small():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "tests", "data", "service/web/node_modules", "service/web/vendor"} <= set(ignored)
    for needed in ("recon", "meshing", "service", "pyproject.toml", "setup.py", "constraints.txt", "README.md",
                   "docker", "docker/install.sh"):
        assert needed not in ignored
