"""safe_extract against hostile zips, and image sets loaded from zip archives."""

import io
import re
import stat
import struct
import zipfile

import numpy as np
import pytest

from recon.io import InputError, load_multiview
from recon.io.archive import safe_extract
from tests.support.dtu import write_dtu_subset


@pytest.fixture(scope="module")
def dtu_small(shared_data, tmp_path_factory):
    """Six real DTU scan24 views at 48x48 as a NeuS folder."""
    return write_dtu_subset(shared_data, tmp_path_factory.mktemp("dtu") / "scan24", size=48)


def make_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    """members: (name or ZipInfo, bytes)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def unix_entry(name, mode):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def extract_error(zip_path, dest, **caps):
    dest.mkdir(exist_ok=True)
    with pytest.raises(InputError) as e:
        safe_extract(zip_path, dest, **caps)
    return e.value


@pytest.mark.parametrize("name,match", [
    ("../evil.txt", r"outside the archive's folder \(\.\.\)"),
    ("a/../../evil.txt", r"outside the archive's folder"),
    ("/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("..\\evil.txt", "outside the archive's folder"),
])
def test_path_escapes_are_refused(tmp_path, name, match):
    z = make_zip(tmp_path / "x.zip", [("ok.txt", b"fine"), (name, b"evil")])
    err = extract_error(z, tmp_path / "out")
    assert err.code == "unsafe_archive" and re.search(match, str(err))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()


@pytest.mark.parametrize("mode,match", [(stat.S_IFLNK | 0o777, "symbolic link"),
                                        (stat.S_IFCHR | 0o666, "device"),
                                        (stat.S_IFIFO | 0o666, "device, pipe")])
def test_links_and_devices_are_refused(tmp_path, mode, match):
    z = make_zip(tmp_path / "x.zip", [(unix_entry("link", mode), b"/etc/passwd")])
    err = extract_error(z, tmp_path / "out")
    assert err.code == "unsafe_archive" and match in str(err)
    assert not (tmp_path / "out" / "link").exists()


def test_duplicate_names_are_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        z = make_zip(tmp_path / "x.zip", [("a/b.txt", b"1"), ("a/b.txt", b"2")])
    assert extract_error(z, tmp_path / "o1").code == "unsafe_archive"
    z = make_zip(tmp_path / "y.zip", [("Img.png", b"1"), ("img.PNG", b"2")])
    assert "repeats" in str(extract_error(z, tmp_path / "o2"))


def test_zip_bomb_ratio_is_refused_before_writing(tmp_path):
    z = make_zip(tmp_path / "bomb.zip", [("zeros.bin", bytes(20 << 20))])
    assert z.stat().st_size < 100 << 10
    err = extract_error(z, tmp_path / "out", max_ratio=100)
    assert err.code == "archive_too_large" and "zip bomb" in str(err)
    assert not any((tmp_path / "out").iterdir())


def test_declared_total_above_cap(tmp_path):
    rng = np.random.default_rng(0)
    z = make_zip(tmp_path / "big.zip", [(f"f{i}.bin", rng.bytes(40_000)) for i in range(3)])
    err = extract_error(z, tmp_path / "out", max_total_bytes=100_000)
    assert err.code == "archive_too_large" and "120000 bytes" in str(err)
    assert safe_extract(z, tmp_path / "out", max_total_bytes=120_000)  # at the cap: accepted


def test_lying_sizes_do_not_pass(tmp_path):
    payload = np.random.default_rng(1).bytes(300_000)  # incompressible: ratio stays ~1
    z = make_zip(tmp_path / "liar.zip", [("data.bin", payload)], compression=zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    # Declare 1000 bytes in the local header (offset 22) and the central directory (offset 24).
    struct.pack_into("<I", raw, 22, 1000)
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 1000)
    z.write_bytes(bytes(raw))
    with zipfile.ZipFile(z) as zf:
        assert zf.infolist()[0].file_size == 1000  # the header now lies
    err = extract_error(z, tmp_path / "out", max_total_bytes=10_000)
    assert err.code in ("archive_too_large", "malformed_file")
    written = tmp_path / "out" / "data.bin"
    assert not written.exists() or written.stat().st_size <= 1000


def test_too_many_members_refused_from_the_end_record(tmp_path):
    z = make_zip(tmp_path / "many.zip", [(f"d/{i}.txt", b"") for i in range(10_000)],
                 compression=zipfile.ZIP_STORED)
    err = extract_error(z, tmp_path / "out", max_members=4096)
    assert err.code == "archive_too_large" and "10000 members" in str(err)
    assert not (tmp_path / "out" / "d").exists()


def test_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"hello" * 100)
    assert extract_error(tmp_path / "x.zip", tmp_path / "out").code == "malformed_file"


def test_normal_archive_extracts(tmp_path):
    z = make_zip(tmp_path / "ok.zip", [("top/", b""), ("top/a.txt", b"abc"), ("top/sub/b.bin", bytes(10))])
    (tmp_path / "out").mkdir()
    files = safe_extract(z, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["top/a.txt", "top/sub/b.bin"]
    assert (tmp_path / "out" / "top" / "a.txt").read_bytes() == b"abc"


def zip_folder(src, zip_path, prefix):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, f"{prefix}{p.relative_to(src).as_posix()}")
    return zip_path


@pytest.mark.parametrize("prefix", ["", "dtu_scan24/"])
def test_load_multiview_from_zip(tmp_path, dtu_small, prefix):
    z = zip_folder(dtu_small, tmp_path / "scan.zip", prefix)
    ds = load_multiview(z)
    ref = load_multiview(dtu_small)
    assert ds.n_views == 6 and ds.normalization_source == "scale_mat"
    np.testing.assert_array_equal(ds.images, ref.images)
    np.testing.assert_array_equal(ds.c2w, ref.c2w)


def test_zip_errors_name_the_member(tmp_path, dtu_small):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(dtu_small / "cameras_sphere.npz", "scan/cameras_sphere.npz")
        for i in range(6):
            zf.writestr(f"scan/image/{i:03d}.png", b"not a png")
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match=r"bad\.zip: scan/image/000\.png: cannot read image") as e:
        load_multiview(tmp_path / "bad.zip")
    assert e.value.code == "malformed_file"
    make_zip(tmp_path / "empty.zip", [("readme.txt", b"hi")])
    with pytest.raises(InputError, match="holds no image set") as e:
        load_multiview(tmp_path / "empty.zip")
    assert e.value.code == "unsupported_format"


def test_find_dataset_root(tmp_path):
    from recon.io.multiview import find_dataset_root

    top = tmp_path / "top"
    (top / "sparse" / "0").mkdir(parents=True)
    (top / "sparse" / "0" / "cameras.bin").write_bytes(b"")
    assert find_dataset_root(top) == top
    nested = tmp_path / "nested"
    (nested / "__MACOSX").mkdir(parents=True)
    (nested / "outer" / "scan").mkdir(parents=True)
    (nested / "outer" / "scan" / "transforms.json").write_text("{}")
    assert find_dataset_root(nested) == nested / "outer" / "scan"
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "views.npz").write_bytes(b"")
    assert find_dataset_root(lone) == lone / "views.npz"
    two = tmp_path / "two"
    (two / "a").mkdir(parents=True)
    (two / "b").mkdir()
    with pytest.raises(InputError, match="holds no image set"):
        find_dataset_root(two)
