"""The shared names of the recon layer: pipeline stages and input error codes are StrEnums that
equal their values (so rows and JSON read back as plain strings match them), and nothing
outside them gets through."""

from __future__ import annotations

import json

import pytest

from recon.io.errors import CODES, MALFORMED_FILE, InputError, InputErrorCode
from recon.progress import ProgressEvent, Stage


def test_stages_are_their_values():
    assert [s.value for s in Stage] == ["load", "clean", "normals", "poisson", "fit", "extract", "metrics", "export"]
    assert Stage.FIT == "fit" and f"{Stage.FIT:>5}" == "  fit" and str(Stage.FIT) == "fit"
    assert json.dumps({Stage.LOAD: Stage.EXPORT}) == '{"load": "export"}'


def test_progress_events_name_a_known_stage():
    ev = ProgressEvent("fit", 3, 4)  # a plain string naming a stage becomes the member
    assert ev.stage is Stage.FIT and ev.fraction == 0.75
    with pytest.raises(ValueError, match="'training' is not a valid Stage"):
        ProgressEvent("training", 0, 1)


def test_input_error_codes():
    assert CODES == set(InputErrorCode) and MALFORMED_FILE is InputErrorCode.MALFORMED_FILE
    err = InputError("bad header", code="truncated", path="/tmp/x/cloud.ply")
    assert err.code is InputErrorCode.TRUNCATED and str(err) == "cloud.ply: bad header"
    with pytest.raises(ValueError, match="unknown InputError code 'broken'"):
        InputError("x", code="broken")
