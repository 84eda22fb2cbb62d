"""Loading posed image sets: ``load_multiview`` picks the format from what the path is.

Formats: a NeuS directory (``cameras_sphere.npz``, ``recon.io.neus``), a NeRF-style ``.npz``
(``images``, ``poses``, ``focal``), a ``transforms.json`` (instant-ngp / NeuS2,
``recon.io.transforms``) file or directory, a COLMAP model directory (``recon.io.colmap``), or
a ``.zip`` archive holding one of those directories (extracted safely, ``recon.io.archive``).
The result is a ``recon.io.dataset.MultiviewDataset``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from recon.io.archive import ArchiveLimits, detail_within, safe_extract
from recon.io.colmap import load_colmap
from recon.io.dataset import MultiviewDataset, header_only
from recon.io.errors import NOT_FOUND, UNSUPPORTED_FORMAT, InputError
from recon.io.neus import load_nerf_npz, load_neus
from recon.io.transforms import load_transforms


def load_multiview(path: str | Path, **kwargs) -> MultiviewDataset:
    """Load a posed image set, choosing the format from what ``path`` is.

    * a directory with ``cameras_sphere.npz`` -> NeuS layout (``recon.io.neus``);
    * a directory with ``transforms.json`` (or ``transforms_train.json``), or such a file
      -> instant-ngp / NeuS2 layout (``recon.io.transforms``);
    * a directory with ``sparse/0`` or ``sparse`` holding a COLMAP model -> COLMAP
      (``recon.io.colmap``);
    * an ``.npz`` file with ``images``, ``poses`` and ``focal`` -> NeRF-style arrays;
    * a ``.zip`` archive holding one of the directories above (extracted safely to a
      temporary directory, see ``recon.io.archive``).

    Keyword arguments go to the format's loader; all take ``normalization`` ("auto": the
    format's own normalisation if it has one, else computed; or one of
    ``recon.io.scene_bounds.MODES``) and ``background`` (the grey level RGBA images are
    composited over). Every problem is an ``InputError``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", code=NOT_FOUND, path=p)
    if p.is_file() and p.suffix.lower() == ".zip":
        return load_multiview_zip(p, **kwargs)
    if p.is_file() and p.suffix.lower() == ".npz":
        return load_nerf_npz(p, **kwargs)
    if p.is_file() and p.suffix.lower() == ".json":
        return load_transforms(p, **kwargs)
    if p.is_dir():
        loader = {"neus": load_neus, "transforms": load_transforms, "colmap": load_colmap}.get(detect_layout(p))
        if loader is not None:
            return loader(p, **kwargs)
    raise InputError("not a posed image set: expected a NeuS directory (cameras_sphere.npz), a "
                     "transforms.json, a COLMAP model (sparse/), an .npz with images/poses/focal or a .zip "
                     "of one of these", code=UNSUPPORTED_FORMAT, path=p)


def probe_multiview(path: str | Path, **kwargs) -> MultiviewDataset:
    """``load_multiview`` with header-level checks only, cheap enough to run on submission.

    Checks the layout, the camera files (parsed and decomposed as when loading), counts,
    that every image (and mask) exists, has a readable image header and the common size, and
    the framing of the cameras. Pixels are not decoded: ``images`` and ``masks`` of the
    result are read-only placeholders, and the unit sphere comes from the cameras (or sparse
    points) instead of the masks. A corrupt image body is only found by the full load.
    """
    with header_only():
        return load_multiview(path, **kwargs)


def detect_layout(root: Path) -> str | None:
    """'neus', 'transforms', 'colmap' or None for a directory."""
    if (root / "cameras_sphere.npz").is_file():
        return "neus"
    if any((root / n).is_file() for n in ("transforms.json", "transforms_train.json")):
        return "transforms"
    for sub in (root / "sparse" / "0", root / "sparse"):
        if any((sub / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return "colmap"
    return None


def find_dataset_root(folder: Path) -> Path:
    """The folder (or file) inside an extracted archive that holds the image set.

    The archive's top level itself, or its single top-level folder (macOS ``__MACOSX`` and
    hidden entries ignored), or a lone ``.npz`` or ``transforms*.json``.
    """
    cur = folder
    for _ in range(3):
        if detect_layout(cur):
            return cur
        entries = [p for p in cur.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        npz = [p for p in entries if p.is_file() and p.suffix.lower() == ".npz"]
        if len(npz) == 1 and len(entries) == 1:
            return npz[0]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) != 1 or len(entries) != 1:
            break
        cur = dirs[0]
    raise InputError("the archive holds no image set: expected a NeuS folder (cameras_sphere.npz, image/), a "
                     "transforms.json with its images, a COLMAP project (sparse/, images/) or one .npz, at the top "
                     "level or in a single top-level folder", code=UNSUPPORTED_FORMAT)


def load_multiview_zip(path: Path, *, limits: ArchiveLimits | None = None, **kwargs) -> MultiviewDataset:
    """Extract ``path`` safely into a temporary folder and load the image set in it."""
    limits = limits or ArchiveLimits()
    with tempfile.TemporaryDirectory(prefix="surfrecon-zip-") as tmp:
        safe_extract(path, tmp, max_members=limits.max_members, max_total_bytes=limits.max_total_bytes,
                     max_ratio=limits.max_ratio)
        try:
            root = find_dataset_root(Path(tmp))
            ds = load_multiview(root, **kwargs)
        except InputError as e:  # name the archive, not the temporary folder
            raise InputError(detail_within(e, Path(tmp)), code=e.code, path=path) from e
    return ds
