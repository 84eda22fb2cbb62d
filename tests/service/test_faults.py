"""Cancelling in every stage of a job: it ends ``canceled`` promptly, by the worker's own hand,
with no artifact (not even half a set) and no checkpoint left behind.

Stages are held open by the stage hooks (``hooks/stage_hooks.py``: the workers linger on
entering a stage until canceled), so no test relies on a job happening to be slow; each
attempt's start and finish are counted with the hooks' markers. Restarts of the API and the
dispatcher are in ``test_cluster.py``.
"""

from __future__ import annotations

import time

import pytest
from stage_hooks import read_marks, set_rules
from svc_helpers import submit, wait_for_job

FINAL = ("succeeded", "failed", "canceled")
DIGS = {"method": "digs", "preset": "fast", "formats": ["ply"]}


STAGES = ["load", "fit", "extract", "metrics", "export", "upload"]


@pytest.fixture(scope="module")
def stage_servers(make_server, stage_hooks, tmp_path_factory):
    """One server per stage whose workers linger 60 s on entering that stage."""
    markers = tmp_path_factory.mktemp("markers")
    servers = {stage: make_server(cancel_grace_s=30.0, job_num_cpus=0.5) for stage in STAGES}
    for stage, s in servers.items():  # before any job is submitted
        set_rules(stage_hooks, s.ctx.settings.database_url, linger={stage: 60.0}, markers=markers)
    yield markers, servers
    for s in servers.values():
        s.stop()


def test_cancel_in_every_stage_ends_promptly_with_no_artifacts(stage_servers, inputs):
    markers, servers = stage_servers
    jobs = {stage: submit(s.client, inputs["sphere"], DIGS).json()["id"] for stage, s in servers.items()}
    for stage, job_id in jobs.items():
        s = servers[stage]
        wait_for_job(s.client, job_id, lambda j, st=stage: j["status"] == "running" and j["stage"] == st, 180, f"in {stage}")
        t0 = time.monotonic()
        assert s.client.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        final = wait_for_job(s.client, job_id, lambda j: j["status"] in FINAL, 30, "stopped")
        took = time.monotonic() - t0
        assert final["status"] == "canceled" and final["error"]["code"] == "canceled", (stage, final)
        # A cooperative stop by the worker itself, well inside the 30 s force-cancel grace.
        assert took < 10, (stage, took)
        assert final["artifacts"] == [] and final["attempt"] == 1
        # The worker records the final state first, then deletes what it wrote and marks its
        # finish: wait for the mark (the worker's last act) before looking at the files.
        deadline = time.monotonic() + 10
        while len(read_marks(markers, job_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        art = s.ctx.artifacts
        assert not (art.root / "jobs" / job_id / "artifacts").exists(), stage  # not even a half set
        assert not art.exists(f"jobs/{job_id}/checkpoint.pt"), stage
        marks = read_marks(markers, job_id)
        assert [m[:2] for m in marks] == [["start", "1"], ["finish", "1"]], marks
        assert marks[1][2:4] == ["canceled", "owned"], marks
