"""Image-set archives (.zip) over the HTTP API: accepted for method neus, refused with stable
codes when hostile or invalid, and refused for point-cloud methods.

Runs its own API-only server (no dispatcher, so no Ray): submitted jobs stay queued.
"""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from svc_helpers import POISSON, assert_problem, free_port, submit

from tests.support.dtu import write_dtu_subset

NEUS = {"method": "neus", "preset": "fast"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(client, settings) of a uvicorn server with small archive caps."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("data"), dispatcher_enabled=False,
                        max_archive_members=80, max_archive_bytes=8 << 20)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        yield client, settings
    finally:
        client.close()
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory, shared_data) -> Path:
    """Six real DTU scan24 views at 64x64 as a NeuS folder."""
    return write_dtu_subset(shared_data, tmp_path_factory.mktemp("dtu") / "scan24", size=64)


@pytest.fixture(scope="module")
def scan_zip(tmp_path_factory, scan_dir) -> Path:
    """The NeuS folder of ``scan_dir`` in one top-level folder of a zip."""
    src = scan_dir
    path = tmp_path_factory.mktemp("zips") / "scan24.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, f"scan24/{p.relative_to(src).as_posix()}")
    return path


def write_zip(path: Path, members) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_zip_image_set_is_accepted_for_neus(api, scan_zip):
    client, settings = api
    r = submit(client, scan_zip, NEUS)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["spec"]["method"] == "neus" and job["input"]["name"] == "scan24.zip"
    # The same archive as an upload, then a JSON job that refers to it.
    up = client.post("/v1/uploads", params={"kind": "images"}, files={"file": ("scan24.zip", scan_zip.read_bytes())})
    assert up.status_code == 201, up.text
    assert up.json()["kind"] == "images"
    r = client.post("/v1/jobs", json={"spec": NEUS, "upload_id": up.json()["id"]})
    assert r.status_code == 202, r.text
    body = assert_problem(client.post("/v1/jobs", json={"spec": POISSON, "upload_id": up.json()["id"]}),
                          422, "validation_error")
    assert "image set" in body["detail"] and "point cloud" in body["detail"]
    assert not list(settings.scratch_dir.glob("unzip-*"))  # extraction folders are removed


def test_zip_for_a_point_cloud_method_is_a_clear_422(api, scan_zip, sphere_xyz):
    client, _ = api
    body = assert_problem(submit(client, scan_zip, POISSON), 422, "unsupported_format")
    assert "scan24.zip" in body["detail"] and "'neus'" in body["detail"]
    body = assert_problem(submit(client, sphere_xyz, NEUS), 422, "unsupported_format")
    assert "sphere.xyz" in body["detail"] and ".zip" in body["detail"]
    r = submit(client, sphere_xyz, POISSON)  # point clouds are unaffected
    assert r.status_code == 202, r.text
    up = client.post("/v1/uploads", files={"file": ("sphere.xyz", sphere_xyz.read_bytes())})
    assert up.status_code == 201 and up.json()["kind"] == "points"


@pytest.mark.parametrize("members,code,fragment", [
    ([("scan/../../escape.txt", b"x")], "unsafe_archive", "outside"),
    ([("/etc/cron.d/x", b"x")], "unsafe_archive", "absolute path"),
    ([("zeros.bin", bytes(9 << 20))], "archive_too_large", "expands"),
    ([(f"f{i}.txt", b"") for i in range(81)], "archive_too_large", "81 members"),
    ([("readme.txt", b"hello")], "unsupported_format", "holds no image set"),
])
def test_hostile_or_invalid_archives(api, tmp_path, members, code, fragment):
    client, settings = api
    z = write_zip(tmp_path / "bad.zip", members)
    body = assert_problem(submit(client, z, NEUS), 422, code)
    assert fragment in body["detail"] and "bad.zip" in body["detail"]
    assert "/tmp" not in body["detail"] and str(settings.data_dir) not in body["detail"]
    assert not list(settings.scratch_dir.glob("unzip-*"))


def test_broken_image_set_names_the_member(api, tmp_path, scan_dir):
    client, _ = api
    z = tmp_path / "broken.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(scan_dir / "cameras_sphere.npz", "scan/cameras_sphere.npz")
        for i in range(5):  # one image short of the 6 cameras
            zf.write(scan_dir / "image" / f"{i:03d}.png", f"scan/image/{i:03d}.png")
    body = assert_problem(submit(client, z, NEUS), 422, "malformed_file")
    assert "broken.zip: scan/cameras_sphere.npz: 5 images in image/ but world_mat" in body["detail"], body
    r = client.post("/v1/uploads", params={"kind": "images"}, files={"file": ("broken.zip", z.read_bytes())})
    assert_problem(r, 422, "malformed_file")


def test_batch_of_image_sets(api, scan_zip, tmp_path):
    client, _ = api
    data = scan_zip.read_bytes()
    files = [("file", ("a.zip", data)), ("file", ("b.zip", data))]
    r = client.post("/v1/batches", files=files, data={"spec": '{"method": "neus", "preset": "fast"}'})
    assert r.status_code == 202, r.text
    assert len(r.json()["jobs"]) == 2
    bad = write_zip(tmp_path / "c.zip", [("readme.txt", b"hi")])
    files.append(("file", ("c.zip", bad.read_bytes())))
    body = assert_problem(client.post("/v1/batches", files=files, data={"spec": '{"method": "neus"}'}),
                          422, "unsupported_format")
    assert "c.zip" in body["detail"]
