"""Robustness benchmark: every point-cloud method against Open3D's documented Poisson pipeline,
on clean, degraded and scanned inputs.

Inputs. Each mesh in ../shared/data/meshes is sampled with 50k unoriented points (seed 0) and
degraded as ``bench/degrade.py`` says: ``clean``, ``noise0.25`` / ``noise0.5`` / ``noise1``
(Gaussian, that % of the bbox diagonal per axis), ``outliers10`` (+10% uniform in the bbox grown
by 5%), ``sparse3k`` (3,000 points), ``holes3`` (three holes of 5% of the points each),
``halfdensity`` (one half of the shape at 1/10 density). The ABC virtual scans of
../shared/data/point_clouds/abc_points2surf_minimal are used as they are (case ``scan``) and the
open T-shirt of ../shared/data/open_surfaces/ponq_tshirt is sampled like a mesh (case ``clean``).
Ground truth is always the clean mesh.

Methods. Every point method of the method table (``recon.methods.method_names("points")``),
through the product's ``recon.pipeline.run``, and the fixed baseline ``o3d``: Open3D's
documented pipeline implemented here (``estimate_normals(KNN 30)``,
``orient_normals_consistent_tangent_plane(30)``, ``create_from_point_cloud_poisson(depth=9)``,
no trimming), so the baseline does not move when the product's ``poisson`` does. Methods that fit
a field run once per ``--seeds`` seed; those that do not (poisson) and o3d run once.

Every run is its own process, so its peak memory is its own. Output: Markdown tables on stdout,
one line per finished run on stderr.

    python bench/pointcloud.py [--preset balanced] [--shapes ponq_bunny,spot] [--cases clean,noise1]
        [--methods digs,poisson] [--seeds 0,1,2] [--json out.json] [--baseline-cache o3d.json]
        [--judge auto] [--dry-run]
    python bench/pointcloud.py --from-json out.json [--judge auto]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from bench.degrade import CASES, degrade  # noqa: E402 - needs ROOT on the path

N_POINTS = 50_000
"""Samples of a clean mesh."""
BASELINE = "o3d"
BASELINE_VERSION = "o3d-poisson-knn30-orient30-depth9-v1"
"""Changes whenever the baseline's code does, so that a stale cache is not reused."""
SCAN_CASE = "scan"
METRICS = ("time_s", "peak_mb", "chamfer_l1", "precision", "recall", "f_score", "normal_consistency",
           "hausdorff95")


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: ``kind`` 'mesh' (sampled, every case), 'scan' (its points as they are,
    case 'scan') or 'open' (an open surface, sampled, case 'clean')."""

    name: str
    kind: str
    gt: Path
    points: Path | None = None

    @property
    def cases(self) -> list[str]:
        return {"mesh": list(CASES), "scan": [SCAN_CASE], "open": ["clean"]}[self.kind]


def discover_shapes() -> list[Shape]:
    """The benchmark's shapes, named by their data folder (scans: ``abc_<id>``)."""
    out = []
    for p in sorted((DATA / "meshes").glob("*/*")):
        if p.suffix.lower() in (".obj", ".stl", ".ply"):
            out.append(Shape(p.parent.name, "mesh", p))
    scans = DATA / "point_clouds" / "abc_points2surf_minimal"
    for p in sorted((scans / "04_pts").glob("*.xyz.npy")):
        stem = p.name[: -len(".xyz.npy")]
        out.append(Shape(f"abc_{stem.split('_')[0]}", "scan", scans / "03_meshes" / f"{stem}.ply", p))
    shirt = DATA / "open_surfaces" / "ponq_tshirt" / "tshirt.obj"
    if shirt.exists():
        out.append(Shape("ponq_tshirt", "open", shirt))
    return out


def point_methods() -> dict[str, bool]:
    """Every point method of the method table, in list order -> whether it varies with the seed
    (it fits a field; a method that builds its mesh directly is deterministic)."""
    from recon.methods import METHODS, method_names

    return {m: METHODS[m].field_kind != "none" for m in method_names("points")}


# ---------------------------------------------------------------------------------------------
# One run, in a child process


def _peak_mb() -> float:
    """This process's peak resident memory in MB: VmHWM of its own address space (``ru_maxrss``
    would also count the parent's high-water mark inherited through fork/exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_product(points: str, gt: str, method: str, preset: str, seed: int) -> dict:
    """One ``recon.pipeline.run``: time from file to exported mesh (metrics, the ground truth's
    reading and Open3D's import excluded, as for the baseline) and peak memory up to the metrics
    stage."""
    import open3d  # noqa: F401  (imported before the clock, as run_baseline does: a worker pays it once)

    from recon.pipeline import run
    from recon.progress import Stage
    from recon.spec import JobSpec

    peak: list[float] = []

    def progress(event) -> None:
        if event.stage == Stage.METRICS and not peak:
            peak.append(_peak_mb())

    with tempfile.TemporaryDirectory() as tmp:
        res = run(JobSpec(method=method, preset=preset, seed=seed), points, tmp, gt_path=gt, progress=progress)
    t = res.metrics["timings_s"]
    return {"time_s": t["total"] - t["metrics"], "peak_mb": peak[0] if peak else _peak_mb(),
            "n_faces": res.mesh.n_faces, **_gt_metrics(res.metrics["ground_truth"]),
            "timings_s": {k: round(v, 3) for k, v in t.items()}}


def run_baseline(points: str, gt: str) -> dict:
    """Open3D's documented pipeline, timed from file to exported mesh like the product: load,
    ``estimate_normals(KNN 30)``, ``orient_normals_consistent_tangent_plane(30)``,
    ``create_from_point_cloud_poisson(depth=9)`` with its other defaults, no trimming, write PLY."""
    import open3d as o3d

    from meshing.export import load_mesh
    from meshing.mesh import Mesh
    from meshing.metrics import evaluate_meshes

    marks = [time.perf_counter()]
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.load(points).astype(np.float64)))
    marks.append(time.perf_counter())
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=30))
    pcd.orient_normals_consistent_tangent_plane(30)
    marks.append(time.perf_counter())
    mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=9)
    marks.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as tmp:
        o3d.io.write_triangle_mesh(str(Path(tmp) / "mesh.ply"), mesh)
    marks.append(time.perf_counter())
    peak = _peak_mb()
    pred = Mesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int64))
    steps = dict(zip(("load", "normals", "poisson", "export"), np.diff(marks), strict=True))
    return {"time_s": marks[-1] - marks[0], "peak_mb": peak, "n_faces": pred.n_faces,
            **_gt_metrics(evaluate_meshes(pred, load_mesh(gt), seed=0)),
            "timings_s": {k: round(float(v), 3) for k, v in steps.items()}}


def _gt_metrics(g: dict) -> dict:
    return {k: g[k] for k in ("chamfer_l1", "precision", "recall", "f_score", "normal_consistency",
                              "hausdorff95")}


def _child(job: dict) -> dict:
    if job["method"] == BASELINE:
        return run_baseline(job["points"], job["gt"])
    return run_product(job["points"], job["gt"], job["method"], job["preset"], job["seed"])


def prebuild_kernel() -> None:
    """Compile (or load) the CPU hash-grid kernel once, before any timed run, so that no run's time
    includes a compile. Its cache is shared by every checkout that does not set
    ``SURFRECON_EXT_DIR``, and a checkout with another source path recompiles it (~1 min)."""
    subprocess.run([sys.executable, "-m", "recon.encodings.build"], cwd=ROOT, check=False, stdout=sys.stderr,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                  os.environ.get("PYTHONPATH")]))})


def run_in_subprocess(job: dict, timeout: float) -> dict:
    """Run ``job`` in a fresh interpreter; its measurements, or ``{"error": ...}``."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--_one", json.dumps(job)], capture_output=True,
                              text=True, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": tail[0][:300]}
    return json.loads(line[0][len("RESULT "):])


# ---------------------------------------------------------------------------------------------
# Inputs and the plan


def prepare_input(shape: Shape, case: str, workdir: Path) -> tuple[Path, int, str]:
    """Write ``case`` of ``shape`` to a float32 .npy: (path, number of points, SHA-1 of the array)."""
    from meshing.export import load_mesh
    from meshing.mesh import sample_surface

    if shape.kind == "scan":
        pts = np.load(shape.points).astype(np.float32)
    else:
        clean, _ = sample_surface(load_mesh(shape.gt), N_POINTS, seed=0)
        pts = degrade(clean, shape.name, case).astype(np.float32)
    path = workdir / f"{shape.name}-{case}.npy"
    np.save(path, pts)
    return path, len(pts), hashlib.sha1(np.ascontiguousarray(pts).tobytes()).hexdigest()


def plan(shapes: list[Shape], cases: list[str], methods: dict[str, bool], seeds: list[int]) -> list[dict]:
    """Every run, grouped by input: the baseline first, then each method (each seed if it varies)."""
    runs = []
    for s in shapes:
        for case in (c for c in s.cases if c in cases):
            runs.append({"shape": s.name, "kind": s.kind, "case": case, "method": BASELINE, "seed": 0})
            for m, seeded in methods.items():
                for seed in seeds if seeded else seeds[:1]:
                    runs.append({"shape": s.name, "kind": s.kind, "case": case, "method": m, "seed": seed})
    return runs


def _cache_key(r: dict) -> tuple:
    return r["shape"], r["case"], r["input_sha1"], r.get("baseline_version")


def load_records(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data.get("meta", {}), data.get("records", [])


def save_records(path: Path, meta: dict, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    tmp.replace(path)  # a crash mid-write leaves the previous file


def add_to_cache(path: Path, meta: dict, baseline: list[dict]) -> None:
    """Put ``baseline`` records into the JSON file at ``path``, replacing those of the same input
    and keeping everything else in it (it may be a --json output)."""
    old_meta, old = load_records(path) if path.exists() else (meta, [])
    keys = {_cache_key(r) for r in baseline}
    save_records(path, old_meta, [r for r in old if r["method"] != BASELINE or _cache_key(r) not in keys]
                 + baseline)


def execute(runs: list[dict], shapes: dict[str, Shape], preset: str, timeout: float,
            cache: dict[tuple, dict], on_record=lambda records: None) -> list[dict]:
    """Run the plan; baseline records come from ``cache`` when their input is the same.
    ``on_record(records so far)`` is called after every run (to save them as they come)."""
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared: dict[tuple, tuple] = {}
        for i, run in enumerate(runs, 1):
            key = (run["shape"], run["case"])
            if key not in prepared:
                for old in prepared.values():  # one input on disk at a time
                    old[0].unlink(missing_ok=True)
                prepared = {key: prepare_input(shapes[run["shape"]], run["case"], Path(tmp))}
            path, n, sha1 = prepared[key]
            rec = {**run, "preset": preset if run["method"] != BASELINE else None, "n_points": n,
                   "input_sha1": sha1}
            if run["method"] == BASELINE:
                rec["baseline_version"] = BASELINE_VERSION
                cached = cache.get(_cache_key(rec))
                if cached is not None:
                    records.append({**cached, "cached": True})
                    _report(records[-1], i, len(runs))
                    on_record(records)
                    continue
            job = {"points": str(path), "gt": str(shapes[run["shape"]].gt), "method": run["method"],
                   "preset": preset, "seed": run["seed"]}
            rec.update(run_in_subprocess(job, timeout))
            rec["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            records.append(rec)
            _report(rec, i, len(runs))
            on_record(records)
    return records


def _report(r: dict, i: int, n: int) -> None:
    head = f"[{i}/{n}] {r['shape']}/{r['case']}/{r['method']}/seed {r['seed']}"
    if "error" in r:
        print(f"{head}: FAILED {r['error']}", file=sys.stderr, flush=True)
        return
    print(f"{head}: {r['time_s']:.1f} s {r['peak_mb']:.0f} MB CD {r['chamfer_l1']:.5f} "
          f"F {r['f_score']:.4f} NC {r['normal_consistency']:.4f}" + (" (cached)" if r.get("cached") else ""),
          file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Tables


def summarise(records: list[dict]) -> dict[tuple, dict]:
    """(shape, case, method) -> {metric: (mean, sample std over seeds or None for one run), or None
    when every run failed}, plus 'kind', 'n_points', 'runs' (successful) and 'failed'."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["shape"], r["case"], r["method"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        row = {"kind": rs[0]["kind"], "n_points": rs[0]["n_points"], "runs": len(ok), "failed": len(rs) - len(ok)}
        for m in METRICS:
            v = np.array([r[m] for r in ok], dtype=float)
            row[m] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None) if len(v) else None
        out[key] = row
    return out


def _mean(row: dict | None, metric: str) -> float | None:
    return None if row is None or row[metric] is None else row[metric][0]


def _cell(row: dict, metric: str, fmt: str) -> str:
    v = row[metric]
    if v is None:
        return "failed"
    return f"{v[0]:{fmt}}" + (f" ±{v[1]:{fmt}}" if v[1] is not None else "")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def results_table(summary: dict[tuple, dict], order: list[str]) -> str:
    """One row per (shape, case, method), the baseline first; neural rows: mean ±std over seeds."""
    cols = ["shape", "case", "points", "method", "runs", "time s", "peak MB", "CD-L1", "precision", "recall",
            "F@1%", "NC", "HD95", "CD/o3d", "time/o3d"]
    right = "|" + "|".join("---" if c in ("shape", "case", "method") else "---:" for c in cols) + "|"
    lines = ["| " + " | ".join(cols) + " |", right]
    fmts = {"time_s": ".1f", "peak_mb": ".0f", "chamfer_l1": ".5f", "precision": ".4f", "recall": ".4f",
            "f_score": ".4f", "normal_consistency": ".4f", "hausdorff95": ".4f"}
    for (shape, case, method), row in _ordered(summary, order):
        base = summary.get((shape, case, BASELINE))
        cd = _ratio(_mean(row, "chamfer_l1"), _mean(base, "chamfer_l1"))
        tr = _ratio(_mean(row, "time_s"), _mean(base, "time_s"))
        runs = f"{row['runs']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        cells = [shape, case, f"{row['n_points']:,}", method, runs, *(_cell(row, m, fmts[m]) for m in METRICS),
                 "-" if cd is None or method == BASELINE else f"{cd:.2f}",
                 "-" if tr is None or method == BASELINE else f"{tr:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ordered(summary: dict[tuple, dict], order: list[str]):
    """Rows by shape and case in first-seen order, methods in ``order`` (baseline first)."""
    rank = {m: i for i, m in enumerate([BASELINE, *order])}
    inputs = list(dict.fromkeys((s, c) for s, c, _ in summary))
    for s, c in inputs:
        keys = sorted((k for k in summary if k[:2] == (s, c)), key=lambda k: (rank.get(k[2], len(rank)), k[2]))
        for k in keys:
            yield k, summary[k]


def _geomean(values: list[float]) -> float | None:
    return float(math.exp(np.mean(np.log(values)))) if values else None


def summary_table(summary: dict[tuple, dict], methods: list[str]) -> str:
    """Per case: each method's geometric-mean CD ratio to o3d over shapes, and on how many shapes
    its Chamfer is at most o3d's."""
    cases = list(dict.fromkeys(c for _, c, _ in summary))
    lines = ["| case | " + " | ".join(f"{m} CD/o3d (≤1 on)" for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for case in cases:
        cells = [case]
        for m in methods:
            ratios = [r for (s, c, mm), row in summary.items() if c == case and mm == m
                      for r in [_ratio(_mean(row, "chamfer_l1"), _mean(summary.get((s, c, BASELINE)), "chamfer_l1"))]
                      if r is not None]
            g = _geomean(ratios)
            cells.append("-" if g is None else f"{g:.2f} ({sum(r <= 1 for r in ratios)}/{len(ratios)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Judging a method against the baseline


BAR = {
    "clean": {"cd": 1.05, "time": 1.5},
    "degraded": {"cd": 1.0, "time": 2.0},
    "f_margin": 0.002,
    "nc_margin": 0.01,
    "p_margin": 0.005,
    "cd_geomean_degraded": 0.85,
}
"""Issue 11's bar: clean CD <= 1.05x and F >= F_o3d - 0.002; degraded CD <= 1.0x each, geometric
mean CD ratio <= 0.85 over the degraded cases and NC >= NC_o3d - 0.01; everywhere precision >=
P_o3d - 0.005; time <= 1.5x on clean inputs, 2x on degraded ones."""


_EPS = 1e-9
"""A value exactly on the bar passes, whatever the float rounding of the difference."""


def _at_most(value: float | None, limit: float, fmt: str) -> tuple[str, bool]:
    if value is None:
        return "no data", False
    if value <= limit + _EPS:
        return f"{value:{fmt}} pass", True
    return f"{value:{fmt}} miss by {value - limit:.2g}", False  # 2 significant digits, never "0.000"


def _at_least(value: float | None, limit: float, fmt: str) -> tuple[str, bool]:
    if value is None:
        return "no data", False
    if value >= limit - _EPS:
        return f"{value:{fmt}} pass", True
    return f"{value:{fmt}} miss by {limit - value:.2g}", False


def judge_table(summary: dict[tuple, dict], method: str) -> str:
    """``method`` (mean over seeds) against o3d on every input both ran, cell by cell: pass, or
    miss and by how much. Clean inputs: CD ratio, F - F_o3d, precision, time ratio; degraded ones
    (every case but 'clean', scans included): CD ratio, NC - NC_o3d, precision, time ratio."""
    cols = ["shape", "case", "CD/o3d", "F − F_o3d", "NC − NC_o3d", "P − P_o3d", "time/o3d", "verdict"]
    lines = [f"Judging `{method}` against `{BASELINE}`", "",
             "| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * 5 + "---|"]
    n_pass = n_all = 0
    degraded_ratios = []
    for (shape, case, m), row in _ordered(summary, [method]):
        if m != method:
            continue
        base = summary.get((shape, case, BASELINE))
        clean = case == "clean"
        bar = BAR["clean" if clean else "degraded"]
        cd = _ratio(_mean(row, "chamfer_l1"), _mean(base, "chamfer_l1"))
        diff = {k: None if _mean(row, k) is None or _mean(base, k) is None else _mean(row, k) - _mean(base, k)
                for k in ("f_score", "normal_consistency", "precision")}
        cells = [_at_most(cd, bar["cd"], ".3f")]
        cells.append(_at_least(diff["f_score"], -BAR["f_margin"], "+.4f") if clean else ("-", True))
        cells.append(("-", True) if clean else _at_least(diff["normal_consistency"], -BAR["nc_margin"], "+.4f"))
        cells.append(_at_least(diff["precision"], -BAR["p_margin"], "+.4f"))
        cells.append(_at_most(_ratio(_mean(row, "time_s"), _mean(base, "time_s")), bar["time"], ".2f"))
        ok = all(c[1] for c in cells)
        n_pass += ok
        n_all += 1
        if not clean and cd is not None:
            degraded_ratios.append(cd)
        lines.append("| " + " | ".join([shape, case, *(c[0] for c in cells), "pass" if ok else "miss"]) + " |")
    g = _geomean(degraded_ratios)
    text, ok = _at_most(g, BAR["cd_geomean_degraded"], ".3f")
    meets = ok and n_all > 0 and n_pass == n_all
    lines += ["", (f"Inputs passing every cell: {n_pass}/{n_all}. Geometric mean CD ratio over the "
                   f"{len(degraded_ratios)} degraded inputs: {text} (bar ≤ {BAR['cd_geomean_degraded']})."),
              f"Verdict: `{method}` {'meets' if meets else 'does not meet'} the bar."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _meta(preset: str) -> dict:
    return {"preset": preset, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": _cpu_name(),
            "cores": os.cpu_count(), "argv": sys.argv[1:]}


def _names(arg: str, choices: list[str], what: str) -> list[str]:
    """The comma-separated subset of ``choices`` in ``arg`` (all of them when empty)."""
    names = [s for s in arg.split(",") if s]
    unknown = [s for s in names if s not in choices]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; expected some of {', '.join(choices)}")
    return names or list(choices)


def print_tables(meta: dict, records: list[dict], methods: list[str], judge: str | None) -> None:
    summary = summarise(records)
    cached = sum(bool(r.get("cached")) for r in records)
    print(f"preset `{meta.get('preset')}`, {meta.get('date')}, {meta.get('cpu')}, {meta.get('cores')} cores"
          + (f"; {cached} baseline runs reused from the cache" if cached else "") + "\n")
    print(results_table(summary, methods))
    print()
    print(summary_table(summary, methods))
    if judge:
        print()
        print(judge_table(summary, judge))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="balanced", help="preset of the product's methods (o3d is fixed)")
    ap.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    ap.add_argument("--cases", default="", help=f"comma-separated cases of {', '.join([*CASES, SCAN_CASE])}")
    ap.add_argument("--methods", default="", help="comma-separated point methods (default: every one)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the methods that fit a field")
    ap.add_argument("--json", default="", help="write every run's record to this JSON file")
    ap.add_argument("--from-json", default="", help="print the tables of a --json file; run nothing")
    ap.add_argument("--baseline-cache", default="", help="reuse o3d runs on identical inputs from this JSON "
                    "file (a --json output works) and add new ones to it")
    ap.add_argument("--judge", default="", metavar="METHOD", help="judge METHOD against o3d on issue 11's bar")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run counts as failed")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print("RESULT " + json.dumps(_child(json.loads(args._one))))
        return

    if args.from_json:
        meta, records = load_records(Path(args.from_json))
        present = list(dict.fromkeys(r["method"] for r in records if r["method"] != BASELINE))
        methods = _names(args.methods, present, "method")
        shapes = set(_names(args.shapes, list(dict.fromkeys(r["shape"] for r in records)), "shape"))
        cases = set(_names(args.cases, list(dict.fromkeys(r["case"] for r in records)), "case"))
        records = [r for r in records if r["shape"] in shapes and r["case"] in cases
                   and r["method"] in (BASELINE, *methods)]
        print_tables(meta, records, methods, args.judge or None)
        return

    all_methods = point_methods()
    asked = ",".join(m for m in args.methods.split(",") if m != BASELINE)  # o3d always runs
    methods = {m: all_methods[m] for m in _names(asked, list(all_methods), "method")}
    if args.judge and args.judge not in methods:
        raise SystemExit(f"--judge {args.judge}: expected one of the methods run ({', '.join(methods)})")
    shapes = discover_shapes()
    wanted = set(_names(args.shapes, [s.name for s in shapes], "shape"))
    shapes = [s for s in shapes if s.name in wanted]
    cases = _names(args.cases, [*CASES, SCAN_CASE], "case")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs = plan(shapes, cases, methods, seeds)
    if args.dry_run:
        print("| # | shape | case | method | seed |\n|---:|---|---|---|---:|")
        for i, r in enumerate(runs, 1):
            print(f"| {i} | {r['shape']} | {r['case']} | {r['method']} | {r['seed']} |")
        print(f"\n{len(runs)} runs")
        return

    cache_path = Path(args.baseline_cache) if args.baseline_cache else None
    cache = {}
    if cache_path and cache_path.exists():
        cache = {_cache_key(r): r for r in load_records(cache_path)[1]
                 if r["method"] == BASELINE and "error" not in r}
    meta = _meta(args.preset)

    def save(records: list[dict]) -> None:
        if args.json:
            save_records(Path(args.json), meta, records)
        new = [r for r in records if r["method"] == BASELINE and "error" not in r and not r.get("cached")]
        if cache_path and new:
            add_to_cache(cache_path, meta, new)

    if any(methods.values()):
        prebuild_kernel()
    records = execute(runs, {s.name: s for s in shapes}, args.preset, args.timeout, cache, save)
    print()
    print_tables(meta, records, list(methods), args.judge or None)


if __name__ == "__main__":
    main()
