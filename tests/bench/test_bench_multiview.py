"""The photo benchmark's ``--set`` overrides: plain fields, nested configs merged into the preset's,
and one-line errors for what is not a field or not valid."""

from argparse import Namespace
from dataclasses import replace

import pytest

from bench.multiview import overrides
from recon.encodings.hash_grid import HashGridConfig
from recon.fields.background import BackgroundConfig
from recon.methods import get_method


def preset():
    return get_method("neus").presets["balanced"].fit


def test_plain_fields_take_json_values():
    out = overrides(Namespace(set=["w_eikonal=0.03", "seed=2", "appearance=null"]), preset())
    assert out == {"w_eikonal": 0.03, "seed": 2, "appearance": None}


def test_nested_configs_change_only_the_fields_given():
    base = preset()
    out = overrides(Namespace(set=['color={"hidden_dim": 32}', 'background_field={"n_samples": 32}']), base)
    assert out["color"].hidden_dim == 32 and out["color"].view_degree == base.color.view_degree == 1
    assert out["background_field"].n_samples == 32
    assert out["background_field"].encoding == base.background_field.encoding
    deep = overrides(Namespace(set=['background_field={"encoding": {"finest_resolution": 1024}}']), base)
    assert deep["background_field"].encoding == replace(base.background_field.encoding, finest_resolution=1024)
    assert deep["background_field"].n_samples == base.background_field.n_samples
    # The preset has no appearance grid: the object's fields go into a fresh one.
    grid = overrides(Namespace(set=['appearance={"n_levels": 8, "finest_resolution": 256}']), base)["appearance"]
    assert grid == HashGridConfig(n_levels=8, finest_resolution=256)
    # The balanced preset's background for a grown ball is changed in place; a preset without one
    # (fast) gets a fresh one with the fields given.
    grown = overrides(Namespace(set=['grown_background={"full_levels_at": 0.6}']), base)["grown_background"]
    assert grown == replace(base.grown_background, full_levels_at=0.6) and grown.start_levels == 2
    fast = get_method("neus").presets["fast"].fit
    assert fast.grown_background is None
    grown = overrides(Namespace(set=['grown_background={"start_levels": 3}']), fast)["grown_background"]
    assert grown == BackgroundConfig(start_levels=3)


@pytest.mark.parametrize("item, message", [
    ("w_eikonal", "expects key=value"),
    ("colour={}", "not a NeusConfig field"),
    ("seed=two", "expected a JSON value"),
    ('color={"view_degree": 5}', "view_degree"),
    ('appearance={"levels": 8}', "HashGridConfig has no field 'levels'"),
    ('background_field={"encoding": {"finest": 9}}', "HashGridConfig has no field 'finest'"),
    ('seed={"a": 1}', "takes a JSON value, not an object"),
    ("early_max_s=-1", "early_max_s >= 0"),
    ("march_step=5", "march_step"),
])
def test_bad_overrides_exit_with_one_line(item, message):
    with pytest.raises(SystemExit, match=message):
        overrides(Namespace(set=[item]), preset())
