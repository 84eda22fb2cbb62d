"""Photo sets on the page: a zip picks the 'From photos' method and is accepted by the API; a
zip sent to a point-cloud method is refused in words next to the file picker; a finished photo
job shows its held-out views under the 3D view."""

from __future__ import annotations

import zipfile

import pytest
from web_helpers import needs_chromium, open_page

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def photo_zip(shared_data, tmp_path_factory):
    """Six real DTU scan24 views at 64x64 (NeuS layout: image/, cameras_sphere.npz) as a zip."""
    from tests.support.dtu import write_dtu_subset

    root = write_dtu_subset(shared_data, tmp_path_factory.mktemp("dtu") / "scan24", size=64)
    path = tmp_path_factory.mktemp("photos") / "scan24.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(root))
    return path


def test_photo_set_goes_to_the_photo_method(page, photo_zip, web_server):
    import httpx

    open_page(page, "/")
    page.set_input_files("#file", str(photo_zip))
    assert page.input_value("#method") == "neus"  # chosen for the person: a zip is a set of photos
    assert "A set of photos" in page.text_content("#file-info")
    assert page.text_content("#method-help").startswith("Builds the surface from a zip of photos")
    page.check("input[name=preset][value=fast]")
    page.click("#advanced summary")
    page.fill("#bbox", "-1 -1 -1 1 1")  # five numbers: explained, nothing sent
    page.click("#submit")
    assert "enter six numbers" in page.text_content("#form-error")
    page.fill("#bbox", "-1, -1, -0.5, 1, 1, 0.5")
    page.click("#submit")
    page.wait_for_function("document.getElementById('job-name').textContent === 'scan24.zip'", timeout=30_000)
    assert page.text_content("#form-error") == "" and page.text_content("#file-error") == ""
    job_id = page.evaluate("location.hash").split("=", 1)[1]
    job = httpx.get(f"{web_server}/v1/jobs/{job_id}", timeout=30).json()
    assert job["spec"]["bbox"] == [-1.0, -1.0, -0.5, 1.0, 1.0, 0.5]
    page.click("#cancel")  # not worth a fit here: that the API took it is the point
    page.wait_for_function("document.getElementById('bar').dataset.status === 'canceled'", timeout=30_000)
    page.wait_for_function("document.getElementById('jobs').textContent.includes('From photos, fast · canceled')")


def test_photo_set_with_a_point_method_is_explained(page, photo_zip):
    open_page(page, "/")
    page.set_input_files("#file", str(photo_zip))
    page.select_option("#method", "poisson")
    page.click("#submit")
    page.wait_for_function("document.getElementById('file-error').textContent.includes('Details')")
    text = page.text_content("#file-error")
    assert text.startswith("This kind of file is not supported here.") and "only method 'neus'" in text, text


def test_the_method_list_is_the_servers_table(page, web_server, tmp_path):
    """Labels, order and the default selection come from GET /v1/methods; a point cloud after a
    photo set goes back to the default method."""
    import httpx

    table = httpx.get(web_server + "/v1/methods", timeout=30).json()
    open_page(page, "/")
    options = page.eval_on_selector_all("#method option", "os => os.map(o => [o.value, o.textContent])")
    assert options == [[m["name"], m["label"]] for m in table["methods"]]
    assert options[0] == ["auto", "Automatic (recommended)"]
    assert page.input_value("#method") == table["default"] == "auto"
    assert page.text_content("#method-help").startswith("Looks at the scan")
    (tmp_path / "views.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: the name is what counts
    page.set_input_files("#file", str(tmp_path / "views.zip"))
    assert page.input_value("#method") == "neus"
    (tmp_path / "cloud.xyz").write_text("0 0 0\n1 0 0\n0 1 0\n")
    page.set_input_files("#file", str(tmp_path / "cloud.xyz"))
    assert page.input_value("#method") == "auto"


def test_a_finished_photo_job_shows_its_views_under_the_3d_view(page, photo_zip, web_server):
    """A fast fit of the six DTU views runs to the end (view 0 held out); the page then shows the
    job's views.png under the 3D view, pixel for pixel the artifact the API lists, whose first panel
    is the held-out photo itself."""
    import io

    import httpx
    import numpy as np
    from PIL import Image

    open_page(page, "/")
    page.set_input_files("#file", str(photo_zip))
    page.check("input[name=preset][value=fast]")
    page.click("#submit")
    page.wait_for_function("['succeeded', 'failed', 'canceled'].includes(document.getElementById('bar').dataset.status)",
                           timeout=600_000)  # 275 s once with the machine loaded (the worker runs niced)
    status = page.get_attribute("#bar", "data-status")
    assert status == "succeeded", (status, page.text_content("#job-error"))
    page.wait_for_function("!document.getElementById('views-box').hidden"
                           " && document.getElementById('views-img').naturalWidth > 0", timeout=30_000)
    links = page.eval_on_selector_all("#downloads a", "els => els.map(a => a.getAttribute('href'))")
    assert any(h.endswith("views.png") for h in links), links

    job_id = page.evaluate("location.hash").split("=", 1)[1]
    job = httpx.get(f"{web_server}/v1/jobs/{job_id}", timeout=30).json()
    art = next(a for a in job["artifacts"] if a["name"] == "views.png")
    png = httpx.get(f"{web_server}{art['url']}", timeout=30).content
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert sheet.shape == (64, 3 * 64, 3)  # one held-out view: photo | rendering | normals

    shown = page.evaluate("""() => {
        const img = document.getElementById('views-img');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        return {w: c.width, h: c.height, px: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
    }""")
    assert (shown["w"], shown["h"]) == (sheet.shape[1], sheet.shape[0])
    rgba = np.array(shown["px"], dtype=np.uint8).reshape(sheet.shape[0], sheet.shape[1], 4)
    assert np.abs(rgba[..., :3].astype(int) - sheet).max() <= 1  # the page shows the job's own image

    with zipfile.ZipFile(photo_zip) as z:
        name = sorted(n for n in z.namelist() if n.startswith("image/"))[0]
        photo = np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB"))
    assert np.abs(sheet[:, :64].astype(int) - photo).max() <= 1  # first panel: the held-out photo
    rendering = sheet[:, 64:128].astype(float)
    assert rendering.std() > 5.0  # a rendering, not an empty panel
    assert page.is_visible("#views-img")

    # The metrics table has a section for the photos: the held-out PSNR and each view's, as in metrics.json.
    url = next(a["url"] for a in job["artifacts"] if a["name"] == "metrics.json")
    views = httpx.get(f"{web_server}{url}", timeout=30).json()["views"]
    rows = dict(page.eval_on_selector_all(
        "#metrics table.metrics tr", "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))
    assert float(rows["Held-out photos: PSNR (dB, higher is better)"]) == pytest.approx(views["psnr_test"], rel=1e-3)
    assert rows["Each held-out photo (dB)"] == f"{views['psnr_test_views'][0]:.1f}"
    assert rows["Photos fitted"] == "5" and rows["Photos held out"] == "1"
