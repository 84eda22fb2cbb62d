"""The page's words are keyed by the service's own names: every stage a job can show has a
label, the status and error-code tables name only real statuses and codes. Read from the
modules' text, no browser needed."""

from __future__ import annotations

import re
from pathlib import Path

from recon.io.errors import InputErrorCode
from recon.progress import Stage
from service.jobs.states import FINAL_STATUSES, JobErrorCode, JobStage, JobStatus, stage_names
from service.jobs.worker import STAGE_BANDS
from service.problems import ProblemCode

APP = Path(__file__).resolve().parents[2] / "service" / "web" / "app"


def _keys(module: str, name: str) -> list[str]:
    """Keys of the object literal ``const <name> = { ... };`` in ``app/<module>``."""
    text = (APP / module).read_text()
    m = re.search(r"const " + name + r" = \{(.*?)\n?\};", text, re.DOTALL)
    assert m, f"no object {name} in {module}"
    return re.findall(r"^\s*(\w+):", m.group(1), re.MULTILINE) + re.findall(r"[{,]\s*(\w+):", m.group(1))


def _set(module: str, name: str) -> set[str]:
    text = (APP / module).read_text()
    m = re.search(r"const " + name + r" = new Set\(\[(.*?)\]\);", text, re.DOTALL)
    assert m, f"no set {name} in {module}"
    return set(re.findall(r"'(\w+)'", m.group(1)))


def test_every_stage_has_words_and_no_label_is_stale():
    labels = set(_keys("progress.js", "STAGES"))
    assert labels == set(stage_names())
    assert set(Stage) <= labels  # every stage a pipeline can report (ProgressEvent refuses others)
    assert set(STAGE_BANDS) <= set(stage_names())  # the worker's progress bands name real stages
    assert len(stage_names()) == len(set(stage_names())) == len(Stage) + len(JobStage) + len(FINAL_STATUSES)


def test_status_words_and_final_statuses_match_the_service():
    assert set(_keys("main.js", "STATUS_WORDS")) == set(JobStatus)
    assert _set("main.js", "FINAL") == set(FINAL_STATUSES)


def test_error_words_name_real_codes():
    job_codes = set(JobErrorCode) | set(InputErrorCode)
    failures = set(_keys("progress.js", "FAILURES"))
    assert failures and failures <= job_codes, failures - job_codes
    client_only = {"network"}  # the page's own: the server could not be reached
    problems = set(_keys("api.js", "MESSAGES"))
    assert problems - client_only <= set(ProblemCode) | set(InputErrorCode), problems - client_only
    assert _set("api.js", "FILE_CODES") <= set(ProblemCode) | set(InputErrorCode)
