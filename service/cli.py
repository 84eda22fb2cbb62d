"""The ``surfrecon`` command line: reconstruct and evaluate locally; serve, submit, jobs, cancel
and keys for the service (each implemented in its own module)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _progress_bar(quiet: bool):
    """A progress callback drawing one tqdm bar per stage on stderr."""
    from tqdm import tqdm

    from recon.progress import ProgressEvent

    state: dict = {"stage": None, "bar": None}

    def on_event(ev: ProgressEvent) -> None:
        if quiet:
            return
        if ev.stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"] = ev.stage
            state["bar"] = tqdm(total=ev.total, desc=f"{ev.stage:>8}", file=sys.stderr, leave=False,
                                dynamic_ncols=True)
        bar = state["bar"]
        bar.total = ev.total
        bar.n = ev.step
        if ev.losses:
            bar.set_postfix({k: f"{v:.3g}" for k, v in ev.losses.items() if k in ("total", "surface", "eikonal", "psnr")},
                            refresh=False)
        bar.refresh()

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return on_event, close


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from recon.methods import get_method, method_names
    from recon.pipeline import run
    from recon.progress import Cancelled
    from recon.spec import JobSpec

    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("ply", "obj", "glb", "stl"):
        print(f"error: output must end in .ply, .obj, .glb or .stl, got {out.name!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not Path(args.input).exists():
        print(f"error: input file not found: {args.input}", file=sys.stderr)
        return EXIT_BAD_INPUT
    takes_images = get_method(args.method).input_kind == "images"
    image_methods = " or ".join(f"--method {m}" for m in method_names("images"))
    if not takes_images and (Path(args.input).is_dir() or Path(args.input).suffix.lower() in (".json", ".zip")):
        print(f"error: {args.input} looks like posed images; reconstruct them with {image_methods}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if takes_images and not args.quiet:
        held = f"views 0, {args.holdout_every}, ... held out for PSNR" if args.holdout_every > 0 else "no view held out"
        print(f"{args.method}: fitting a surface to the posed images in {args.input} ({args.preset} preset, {held}); "
              f"on a CPU this takes minutes", file=sys.stderr)
    try:
        spec = JobSpec(method=args.method, extractor=args.extractor, preset=args.preset, resolution=args.resolution, formats=[fmt],
                       seed=args.seed, max_fit_points=args.max_fit_points, device=args.device,
                       holdout_every=args.holdout_every, bbox=args.bbox)
    except ValidationError as e:
        err = e.errors()[0]
        where = f"{err['loc'][-1]}: " if err["loc"] else ""
        print(f"error: invalid options: {where}{err['msg']}", file=sys.stderr)
        return EXIT_BAD_INPUT
    on_event, close = _progress_bar(args.quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="surfrecon-") as tmp:
            result = run(spec, args.input, tmp, gt_path=args.gt, progress=on_event)
            close()
            out.parent.mkdir(parents=True, exist_ok=True)
            Path(result.artifacts[f"mesh.{fmt}"]).replace(out)
            if "views.png" in result.artifacts:  # held-out photos | renderings | normals, beside the mesh
                Path(result.artifacts["views.png"]).replace(out.with_name(f"{out.stem}.views.png"))
    except Cancelled:
        close()
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except (ValueError, OSError) as e:
        close()
        hint = f" (posed images? reconstruct them with {image_methods})" if not takes_images and "poses" in str(e) else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _report(result.metrics, result.mesh, out, args.metrics_json, args.quiet)
    return EXIT_OK


def _report(metrics: dict, mesh, out: Path, metrics_json: str | None, quiet: bool) -> None:
    if metrics_json:
        Path(metrics_json).write_text(json.dumps(metrics, indent=2))
    if quiet:
        return
    t = metrics.get("timings_s", {})
    print(f"wrote {out} ({mesh.n_vertices} vertices, {mesh.n_faces} faces) in {t.get('total', 0):.1f} s")
    inp = metrics.get("input", {})
    if inp:
        print("input points -> mesh: " + ", ".join(f"{k}={inp[k]:.4g}" for k in inp if k.startswith("distance_")))
    views = metrics.get("views", {})
    if "psnr_test" in views:
        each = views.get("psnr_test_views") or []
        spread = f"{min(each):.1f} to {max(each):.1f} dB, " if len(each) > 1 else ""
        n = views["n_test"]
        print(f"held-out views: PSNR {views['psnr_test']:.2f} dB over {n} view{'' if n == 1 else 's'} "
              f"({spread}fitted on {views['n_train']})")
    gt = metrics.get("ground_truth")
    if gt:
        print("vs ground truth: " + ", ".join(f"{k}={v:.4g}" for k, v in gt.items()))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from meshing.export import load_mesh
    from meshing.metrics import evaluate_meshes

    try:
        pred, gt = load_mesh(args.mesh), load_mesh(args.gt)
        metrics = evaluate_meshes(pred, gt, n_samples=args.samples, f_threshold_fraction=args.f_threshold,
                                  seed=args.seed)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max(len(k) for k in metrics)
        for k, v in metrics.items():
            print(f"{k:<{width}}  {v:.6g}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from recon.extraction import EXTRACTORS
    from recon.methods import (
        DEFAULT_METHOD,
        PRESET_NAMES,
        default_extractors,
        describe_methods,
        method_names,
    )

    p = argparse.ArgumentParser(prog="surfrecon", description="Surface reconstruction: point clouds to meshes.")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reconstruct", help="reconstruct a mesh from a point cloud file or posed images")
    images = " or ".join(f"--method {m}" for m in method_names("images"))
    r.add_argument("input", help=f"point cloud: .ply .xyz .txt .npy .npz .obj .las .laz; with {images}, posed "
                                 "images: a directory (NeuS cameras_sphere.npz, transforms.json or COLMAP sparse/), a "
                                 "transforms.json, a NeRF-style .npz (images, poses, focal) or a .zip of a directory")
    r.add_argument("-o", "--output", required=True, help="output mesh: .ply .obj .glb or .stl")
    r.add_argument("--method", choices=method_names(), default=DEFAULT_METHOD, help=describe_methods())
    r.add_argument("--extractor", choices=list(EXTRACTORS), default=None,
                   help=f"mesh extraction (default: {default_extractors()})")
    r.add_argument("--preset", choices=PRESET_NAMES, default="balanced")
    r.add_argument("--resolution", type=int, default=None, help="marching-cubes resolution (32-1024)")
    r.add_argument("--gt", default=None, help="ground-truth mesh for metrics")
    r.add_argument("--metrics-json", default=None, help="write all metrics to this JSON file")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-fit-points", type=int, default=None, help="subsample the input to this many points for fitting")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("--holdout-every", type=int, default=8, metavar="K",
                   help=f"{', '.join(method_names('images'))}: leave every K-th view out of the fit and report "
                        "PSNR on it (0: use all views)")
    r.add_argument("--bbox", type=float, nargs=6, default=None, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help=f"{images}: the region to reconstruct, in the input's frame (default: found from the data)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    r.set_defaults(func=_cmd_reconstruct)

    e = sub.add_parser("evaluate", help="compare a mesh with a ground-truth mesh")
    e.add_argument("mesh")
    e.add_argument("--gt", required=True)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh")
    e.add_argument("--f-threshold", type=float, default=0.01, help="F-score threshold, fraction of the GT bbox diagonal")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_cmd_evaluate)

    from service import admin, client, dispatch_main, serve

    serve.add_parser(sub)
    dispatch_main.add_parser(sub)
    client.add_parsers(sub)
    admin.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
