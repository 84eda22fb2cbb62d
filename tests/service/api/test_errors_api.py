"""Every error is problem+json with a stable code, and bad input never produces a 5xx.

Most run against the API-only server (no dispatcher: submitted jobs stay queued), whose
upload cap is 256 KiB.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from svc_helpers import POISSON, assert_problem, sphere_points, submit


@pytest.mark.parametrize("name, code", [
    ("malformed", "malformed_file"), ("unsupported", "unsupported_format"), ("too_few", "too_few_points"),
    ("nan", "non_finite"),
])
def test_bad_input_files_are_refused_at_submission(idle_server, inputs, name, code):
    body = assert_problem(submit(idle_server.client, inputs[name], POISSON), 422, code)
    assert inputs[name].name in body["detail"] or code == "unsupported_format"
    assert "/tmp" not in body["detail"]  # no server-side paths leak
    assert_problem(idle_server.client.post("/v1/uploads", files={"file": (inputs[name].name,
                                                                          inputs[name].read_bytes())}), 422, code)


def test_truncated_binary_ply_is_refused(idle_server, tmp_path):
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\n" \
             b"property float y\nproperty float z\nend_header\n"
    path = tmp_path / "cut.ply"
    path.write_bytes(header + np.zeros(10 * 3, dtype="<f4").tobytes())
    body = assert_problem(submit(idle_server.client, path, POISSON), 422, "truncated")
    assert "cut.ply" in body["detail"]


def test_upload_over_the_cap_is_413_with_content_length(idle_server, tmp_path):
    path = tmp_path / "big.xyz"
    np.savetxt(path, sphere_points(12000))  # ~ 900 KiB > 256 KiB
    assert path.stat().st_size > (256 << 10) * 2
    assert_problem(submit(idle_server.client, path, POISSON), 413, "payload_too_large")
    assert_problem(idle_server.client.post("/v1/uploads", files={"file": ("big.xyz", path.read_bytes())}),
                   413, "payload_too_large")


def test_upload_over_the_cap_is_413_while_streaming_chunked(idle_server, tmp_path):
    """No Content-Length: the server must count while reading and stop past the cap."""
    boundary = "surfreconboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{json.dumps(POISSON)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.xyz\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    sent = {"bytes": 0}

    def body():
        yield head
        line = b"0.1 0.2 0.3\n" * 8192  # 96 KiB per chunk
        for _ in range(200):  # up to ~19 MiB, far past the cap
            sent["bytes"] += len(line)
            yield line
        yield f"\r\n--{boundary}--\r\n".encode()

    r = idle_server.client.post("/v1/jobs", content=body(),
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_problem(r, 413, "payload_too_large")
    assert "Content-Length" not in r.request.headers
    # The scratch space holds no leftovers of the refused upload.
    assert list(idle_server.ctx.settings.scratch_dir.iterdir()) == []


def test_upload_under_the_cap_is_accepted(idle_server, inputs):
    assert inputs["sphere"].stat().st_size < 256 << 10
    r = submit(idle_server.client, inputs["sphere"], POISSON)
    assert r.status_code == 202 and r.json()["status"] == "queued"


@pytest.mark.parametrize("spec, where", [
    ({"method": "poisson", "colour": "red"}, "colour"),
    ({"method": "marching"}, "method"),
    ({"resolution": 8}, "resolution"),
    ({"formats": ["dwg"]}, "formats"),
    ({"formats": []}, "formats"),
    ({"method": "neus", "bbox": [0, 0, 0, 1, 1]}, "bbox"),
    ({"method": "neus", "bbox": [0, 0, 0, 1, -1, 1]}, "bbox"),
])
def test_bad_spec_is_422_invalid_spec_naming_the_field(idle_server, inputs, spec, where):
    body = assert_problem(submit(idle_server.client, inputs["sphere"], spec), 422, "invalid_spec")
    assert any(where in ".".join(e["loc"]) for e in body["errors"]), body
    assert where in body["detail"]


def test_spec_that_is_not_json_is_422(idle_server, inputs):
    r = idle_server.client.post("/v1/jobs", files={"file": ("s.xyz", inputs["sphere"].read_bytes())},
                                data={"spec": "{method: poisson"})
    assert_problem(r, 422, "invalid_spec")


def test_json_body_errors(idle_server):
    c = idle_server.client
    assert_problem(c.post("/v1/jobs", json={"spec": POISSON}), 422, "validation_error")  # no upload_id
    assert_problem(c.post("/v1/jobs", json={"spec": POISSON, "upload_id": "x", "extra": 1}), 422, "validation_error")
    assert_problem(c.post("/v1/jobs", json={"spec": {"preset": "slow"}, "upload_id": "x"}), 422, "invalid_spec")
    assert_problem(c.post("/v1/jobs", json={"spec": POISSON, "upload_id": "nope"}), 404, "upload_not_found")
    assert_problem(c.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
                   422, "validation_error")
    assert_problem(c.post("/v1/jobs", content=b"x" * (2 << 20), headers={"Content-Type": "application/json"}),
                   413, "payload_too_large")
    assert_problem(c.post("/v1/batches", json={"jobs": []}), 422, "validation_error")


def test_wrong_media_type_and_broken_multipart(idle_server):
    c = idle_server.client
    assert_problem(c.post("/v1/jobs", content=b"hello", headers={"Content-Type": "text/plain"}),
                   415, "unsupported_media_type")
    assert_problem(c.post("/v1/uploads", json={}), 415, "unsupported_media_type")
    assert_problem(c.post("/v1/jobs", content=b"garbage", headers={"Content-Type": "multipart/form-data"}),
                   400, "bad_request")
    r = c.post("/v1/jobs", content=b"--b\r\nnot a header line\r\n\r\n--b--",
               headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"
    assert_problem(c.post("/v1/jobs", data={"spec": json.dumps(POISSON)}, files={"other": ("a", b"1")}),
                   422, "validation_error")
    assert_problem(c.post("/v1/jobs", data={"spec": json.dumps(POISSON), "x": "1"}, files={"file": ("a.xyz", b"1")}),
                   422, "validation_error")


def test_spec_may_come_as_a_file_part(idle_server, inputs):
    files = [("file", ("s.xyz", inputs["sphere"].read_bytes())),
             ("spec", ("spec.json", json.dumps({**POISSON, "formats": ["stl"]}).encode(), "application/json"))]
    r = idle_server.client.post("/v1/jobs", files=files)
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["formats"] == ["stl"]


def test_missing_file_part(idle_server):
    r = idle_server.client.post("/v1/jobs", files={"spec": (None, json.dumps(POISSON))})
    assert_problem(r, 422, "missing_file")


def test_unknown_ids_are_404(idle_server):
    c = idle_server.client
    assert_problem(c.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "job_not_found")
    assert_problem(c.post("/v1/jobs/nope/cancel"), 404, "job_not_found")
    assert_problem(c.get("/v1/jobs/nope/events"), 404, "job_not_found")
    assert_problem(c.get("/v1/jobs/nope/artifacts/mesh.ply"), 404, "job_not_found")
    assert_problem(c.get("/v1/batches/nope"), 404, "batch_not_found")
    assert_problem(c.get("/v1/uploads/nope"), 404, "upload_not_found")
    assert_problem(c.get("/v1/nothing-here"), 404, "route_not_found")
    assert_problem(c.delete("/v1/jobs"), 405, "method_not_allowed")


def test_query_validation_is_problem_json(idle_server):
    for params in ({"limit": 0}, {"limit": "many"}, {"status": "paused"}, {"cursor": "!!"}):
        body = assert_problem(idle_server.client.get("/v1/jobs", params=params), 422, "validation_error")
        assert body["detail"]


def test_cancel_queued_job_then_finished_job_is_409(idle_server, inputs, server):
    job = submit(idle_server.client, inputs["sphere"], POISSON).json()
    r = idle_server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert idle_server.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200  # idempotent
    events = idle_server.client.get(f"/v1/jobs/{job['id']}/events", timeout=10).text
    assert events.count("event: state") == 1 and '"status":"canceled"' in events
    # A finished job cannot be canceled (on the server that runs jobs).
    done = server.wait_for(submit(server.client, inputs["sphere"], POISSON).json()["id"])
    assert_problem(server.client.post(f"/v1/jobs/{done['id']}/cancel"), 409, "job_finished")


def test_idempotency_key(idle_server, inputs):
    c, key = idle_server.client, {"Idempotency-Key": "retry-me-1"}
    first = submit(c, inputs["sphere"], POISSON, headers=key)
    assert first.status_code == 202
    again = submit(c, inputs["sphere"], POISSON, headers=key)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    # Same spec written differently (defaults spelled out) is the same request.
    spelled = submit(c, inputs["sphere"], {**POISSON, "formats": ["ply"], "seed": 0}, headers=key)
    assert spelled.status_code == 200 and spelled.json()["id"] == first.json()["id"]
    assert_problem(submit(c, inputs["sphere"], {**POISSON, "seed": 1}, headers=key), 409, "idempotency_conflict")
    assert_problem(submit(c, inputs["other"], POISSON, headers=key), 409, "idempotency_conflict")
    listed = c.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert sum(j["id"] == first.json()["id"] for j in listed) == 1
    # Batches: same key and files replay the batch.
    files = [("file", ("a.xyz", inputs["sphere"].read_bytes()))]
    b1 = c.post("/v1/batches", files=files, data={"spec": json.dumps(POISSON)}, headers={"Idempotency-Key": "b-1"})
    b2 = c.post("/v1/batches", files=files, data={"spec": json.dumps(POISSON)}, headers={"Idempotency-Key": "b-1"})
    assert (b1.status_code, b2.status_code) == (202, 200) and b1.json()["id"] == b2.json()["id"]


def test_too_many_queued_jobs_is_429(make_server, inputs):
    limited = make_server(dispatcher_enabled=False, max_queued_per_key=2)
    c = limited.client
    for _ in range(2):
        assert submit(c, inputs["sphere"], POISSON).status_code == 202
    r = submit(c, inputs["sphere"], POISSON)
    assert_problem(r, 429, "too_many_queued_jobs")
    assert int(r.headers["retry-after"]) > 0
    files = [("file", ("a.xyz", inputs["sphere"].read_bytes()))]
    assert_problem(c.post("/v1/batches", files=files, data={"spec": "{}"}), 429, "too_many_queued_jobs")
    # Canceling a queued job frees a slot.
    queued = c.get("/v1/jobs", params={"status": "queued"}).json()["items"]
    c.post(f"/v1/jobs/{queued[0]['id']}/cancel")
    assert submit(c, inputs["sphere"], POISSON).status_code == 202


def test_batch_limit(make_server, inputs):
    small = make_server(dispatcher_enabled=False, max_batch_jobs=2)
    files = [("file", (f"{i}.xyz", inputs["sphere"].read_bytes())) for i in range(3)]
    assert_problem(small.client.post("/v1/batches", files=files, data={"spec": "{}"}), 422, "validation_error")


def test_pagination_walks_all_jobs_once(make_server, inputs):
    s = make_server(dispatcher_enabled=False)
    ids = [submit(s.client, inputs["sphere"], POISSON).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = s.client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
