"""Several dispatchers on one job table (SQLite and PostgreSQL): each queued job is handed out
exactly once however the claims interleave, and the dispatcher settings select who dispatches."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from service.jobs.store import JobStore, NewJob


def _jobs(n: int) -> list[NewJob]:
    return [NewJob(spec={"method": "poisson", "n": i}, input={"key": f"uploads/u{i}/input.xyz"}) for i in range(n)]


def test_racing_dispatchers_claim_each_job_once(store: JobStore, db_config):
    rows, _, _ = store.create_jobs(owner="o", jobs=_jobs(120), max_attempts=3, max_queued=1000)
    claims: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def dispatcher(i: int) -> None:
        own = JobStore(db_config, pool_size=1)  # its own engine, like a dispatcher process
        try:
            start.wait()
            while batch := own.claim_for_dispatch(limit=7):
                claims[i].extend(j.id for j in batch)
        except Exception as e:  # noqa: BLE001 - re-raised in the test thread
            errors.append(e)
        finally:
            own.close()

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    counts = Counter(j for c in claims for j in c)
    assert set(counts) == {r.id for r in rows}  # every job was claimed ...
    assert max(counts.values()) == 1  # ... by exactly one dispatcher
    assert store.claim_for_dispatch(limit=10) == []


def test_skip_locked_leaves_locked_rows_to_others(store: JobStore, db_config):
    """PostgreSQL: while one transaction holds claims it has not committed, another dispatcher
    takes the next jobs at once instead of waiting for (or failing on) the locked rows."""
    if db_config.is_sqlite:
        pytest.skip("SQLite serialises writers with the database lock; nothing to skip")
    from sqlalchemy import select, update

    from service.jobs.models import Job, utcnow

    rows, _, _ = store.create_jobs(owner="o", jobs=_jobs(6), max_attempts=3, max_queued=100)
    other = JobStore(db_config, pool_size=1)
    try:
        with store.writing() as s:  # a dispatcher in the middle of its claim
            held = list(s.execute(select(Job.id).where(Job.status == "queued").order_by(Job.created_at)
                                  .limit(3).with_for_update(skip_locked=True)).scalars())
            s.execute(update(Job).where(Job.id.in_(held)).values(dispatched_at=utcnow()))
            got = [j.id for j in other.claim_for_dispatch(limit=10)]
        assert held == [r.id for r in rows[:3]]
        assert got == [r.id for r in rows[3:]]
    finally:
        other.close()


def test_external_dispatcher_setting_keeps_the_api_from_dispatching(tmp_path):
    from service.settings import Settings

    assert Settings(_env_file=None, data_dir=tmp_path).dispatcher_enabled
    external = Settings(_env_file=None, data_dir=tmp_path, dispatcher="external")
    assert not external.dispatcher_enabled
    with pytest.raises(ValueError, match="dispatcher"):
        Settings(_env_file=None, data_dir=tmp_path, dispatcher="sometimes")
    with pytest.raises(ValueError, match="custom Ray resources"):
        Settings(_env_file=None, data_dir=tmp_path, job_resources={"GPU": 1})


def test_env_names_select_the_scaled_out_backends(tmp_path, monkeypatch):
    from service.settings import Settings

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("SURFRECON_DATABASE_URL", "postgresql+psycopg://u@db/surfrecon")
    monkeypatch.setenv("SURFRECON_ARTIFACT_URL", "s3://bucket/prefix")
    monkeypatch.setenv("SURFRECON_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("SURFRECON_DISPATCHER", "external")
    monkeypatch.setenv("SURFRECON_JOB_RESOURCES", '{"worker_node": 1}')
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert (s.ray_address, s.local_ray, s.database_url, s.artifact_url, s.s3_endpoint_url) == (
        "10.0.0.1:6379", False, "postgresql+psycopg://u@db/surfrecon", "s3://bucket/prefix", "http://minio:9000")
    assert not s.dispatcher_enabled and s.job_resources == {"worker_node": 1.0}
    monkeypatch.setenv("SURFRECON_RAY_ADDRESS", "10.0.0.2:6379")  # the prefixed name wins
    assert Settings(_env_file=None, data_dir=tmp_path).ray_address == "10.0.0.2:6379"


class _FakeExecutor:
    """Records what the dispatcher submits; reports a cluster with or without GPUs."""

    def __init__(self, gpus: bool) -> None:
        self.gpus, self.running, self.submitted = gpus, {}, []

    def has_gpus(self) -> bool:
        return self.gpus

    def submit(self, *, job_id: str, attempt: int, device: str) -> None:
        self.submitted.append(device)


@pytest.mark.parametrize("auto_gpu, cluster_gpus, expected", [
    (False, True, ["cpu", "cuda", "auto"]),
    (True, True, ["cpu", "cuda", "cuda"]),
    (True, False, ["cpu", "failed", "cpu"]),
])
def test_devices_asked_of_ray(store: JobStore, tmp_path, auto_gpu, cluster_gpus, expected):
    """'cuda' jobs ask for a GPU (and fail at once on a cluster without any); 'auto' jobs ask for
    one only with ``auto_device_gpu`` on a cluster that has GPUs."""
    from service.jobs.dispatcher import Dispatcher
    from service.settings import Settings

    jobs = [NewJob(spec={"device": d}, input={}) for d in ("cpu", "cuda", "auto")]
    rows, _, _ = store.create_jobs(owner="o", jobs=jobs, max_attempts=3, max_queued=10)
    fake = _FakeExecutor(cluster_gpus)
    Dispatcher(store, fake, Settings(_env_file=None, data_dir=tmp_path, auto_device_gpu=auto_gpu))._dispatch()
    got = list(fake.submitted)
    if not cluster_gpus:  # the 'cuda' job was not submitted but failed with a reason
        failed = store.get_job(owner=None, job_id=rows[1].id)
        assert (failed.status, failed.error["code"]) == ("failed", "no_gpu")
        got.insert(1, "failed")
    assert got == expected


def test_a_dead_local_ray_stops_dispatch_and_says_why(store: JobStore, tmp_path, monkeypatch):
    """With the local Ray's raylet gone, a tick claims nothing and fails naming the process, so
    /readyz turns 503 instead of jobs being handed to a Ray that will never run them."""
    from service.jobs import dispatcher as dispatcher_mod
    from service.settings import Settings

    rows, _, _ = store.create_jobs(owner="o", jobs=[NewJob(spec={"device": "cpu"}, input={})], max_attempts=3,
                                   max_queued=10)
    fake = _FakeExecutor(False)
    fake.collect = lambda: []
    d = dispatcher_mod.Dispatcher(store, fake, Settings(_env_file=None, data_dir=tmp_path))
    monkeypatch.setattr(dispatcher_mod, "local_ray_dead", lambda: ["raylet"])
    with pytest.raises(RuntimeError, match="lost its raylet"):
        d.tick()
    assert fake.submitted == [] and store.get_job(owner=None, job_id=rows[0].id).dispatched_at is None
    monkeypatch.setattr(dispatcher_mod, "local_ray_dead", lambda: [])
    d._dispatch()
    assert fake.submitted == ["cpu"]
