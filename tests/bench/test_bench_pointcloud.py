"""Smoke test of the robustness benchmark's command line: the plan, one tiny real run, re-printing
and judging from its JSON. Behaviour only; the timings it prints are not checked."""

import json
import math
import subprocess
import sys
from pathlib import Path

from recon.methods import METHODS, method_names

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "pointcloud.py"


def bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def table_rows(text: str, first_col: str) -> list[list[str]]:
    """The data rows of the Markdown table whose header starts with ``| first_col |``."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {first_col} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_dry_run_lists_baseline_then_every_seed_of_field_methods(shared_data):
    out = bench("--dry-run", "--shapes", "ponq_bunny,abc_00011084", "--cases", "clean,noise1,scan",
                "--methods", "poisson,digs", "--seeds", "0,1")
    rows = [(r[1], r[2], r[3], r[4]) for r in table_rows(out, "#")]
    per_input = [("o3d", "0"), ("poisson", "0"), ("digs", "0"), ("digs", "1")]  # --methods order
    expected = [(s, c, m, seed) for s, c in [("ponq_bunny", "clean"), ("ponq_bunny", "noise1"),
                                             ("abc_00011084", "scan")] for m, seed in per_input]
    assert rows == expected
    assert out.strip().endswith(f"{len(expected)} runs")


def test_dry_run_default_covers_every_point_method(shared_data):
    rows = table_rows(bench("--dry-run", "--shapes", "ponq_tshirt", "--seeds", "0,1,2"), "#")
    methods = method_names("points")
    runs = {m: 3 if METHODS[m].field_kind != "none" else 1 for m in methods}
    assert [r[3] for r in rows] == ["o3d"] + [m for m in methods for _ in range(runs[m])]
    assert {r[2] for r in rows} == {"clean"}  # the open T-shirt is only sampled clean


def test_one_tiny_run_then_from_json_and_judge(shared_data, tmp_path):
    out_json, cache = tmp_path / "runs.json", tmp_path / "o3d.json"
    tiny = ("--shapes", "ponq_bunny", "--preset", "fast", "--cases", "sparse3k", "--methods", "poisson",
            "--baseline-cache", str(cache))
    out = bench(*tiny, "--json", str(out_json))
    rows = table_rows(out, "shape")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("ponq_bunny", "sparse3k", "3,000", "o3d"),
                                                         ("ponq_bunny", "sparse3k", "3,000", "poisson")]
    assert all(len(r) == 15 for r in rows)
    assert rows[0][-2:] == ["-", "-"] and float(rows[1][-2]) > 0  # ratios to o3d on the method's row
    records = json.loads(out_json.read_text())["records"]
    assert [r["method"] for r in records] == ["o3d", "poisson"]
    for r in records:
        assert "error" not in r
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["peak_mb"] > 0
        assert math.isfinite(r["chamfer_l1"]) and r["hausdorff95"] > 0

    again = bench("--from-json", str(out_json), "--judge", "poisson")
    assert table_rows(again, "shape") == rows
    judged = table_rows(again.split("Judging `poisson` against `o3d`", 1)[1], "shape")
    assert len(judged) == 1 and judged[0][:2] == ["ponq_bunny", "sparse3k"] and len(judged[0]) == 8
    assert judged[0][-1] in ("pass", "miss")
    assert "Verdict: `poisson`" in again

    # The baseline's record was cached; the same input again reuses it instead of running o3d.
    assert [r["method"] for r in json.loads(cache.read_text())["records"]] == ["o3d"]
    third = bench(*tiny)
    assert "1 baseline runs reused from the cache" in third
    assert table_rows(third, "shape")[0] == rows[0]


def record(case, method, seed=0, **m):
    base = {"shape": "s", "kind": "mesh", "case": case, "method": method, "seed": seed, "n_points": 100,
            "time_s": 10.0, "peak_mb": 100.0, "chamfer_l1": 0.01, "precision": 0.99, "recall": 0.99,
            "f_score": 0.99, "normal_consistency": 0.95, "hausdorff95": 0.02}
    return {**base, **m}


def test_judge_applies_the_bar_cell_by_cell():
    from bench.pointcloud import judge_table, summarise

    records = [
        record("clean", "o3d"),
        # Clean: CD 1.04x passes (<= 1.05), F 0.002 lower passes, time 1.6x misses (> 1.5).
        record("clean", "m", 0, chamfer_l1=0.0103, f_score=0.988, time_s=15.0),
        record("clean", "m", 1, chamfer_l1=0.0105, f_score=0.988, time_s=17.0),
        record("noise1", "o3d"),
        # Degraded: CD 0.5x, NC 0.02 lower misses (margin 0.01), precision 0.006 lower misses.
        record("noise1", "m", chamfer_l1=0.005, normal_consistency=0.93, precision=0.984, time_s=19.0),
        record("holes3", "o3d"),
        record("holes3", "m", chamfer_l1=0.008),  # 0.8x, everything else equal: passes
    ]
    rows = table_rows(judge_table(summarise(records), "m"), "shape")
    by_case = {r[1]: r for r in rows}
    assert by_case["clean"][2:] == ["1.040 pass", "-0.0020 pass", "-", "+0.0000 pass", "1.60 miss by 0.1", "miss"]
    assert by_case["noise1"][2:] == ["0.500 pass", "-", "-0.0200 miss by 0.01", "-0.0060 miss by 0.001",
                                     "1.90 pass", "miss"]
    assert by_case["holes3"][-1] == "pass"
    text = judge_table(summarise(records), "m")
    # Geometric mean over the degraded inputs: sqrt(0.5 * 0.8) = 0.632 <= 0.85.
    assert "inputs: 0.632 pass" in text and "Inputs passing every cell: 1/3" in text
    assert "`m` does not meet the bar" in text
    assert "`m` meets the bar" in judge_table(summarise([r for r in records if r["case"] == "holes3"]), "m")
