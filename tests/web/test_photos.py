"""Photo sets on the page: a zip picks the 'From photos' method and is accepted by the API; a
zip sent to a point-cloud method is refused in words next to the file picker."""

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
