"""The page against a server that requires API keys (no interception: real 401s): the key is
asked for where it is entered, entered once, kept in the browser, sent with uploads, the event
stream and downloads; another key sees none of the first key's jobs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from svc_helpers import serve_process
from web_helpers import drawn_fraction, needs_chromium, open_page

from meshing.export import load_mesh

pytestmark = needs_chromium


def _create_key(state_dir, name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "service.cli", "keys", "--data-dir", str(state_dir), "create", name],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """``surfrecon serve`` with ``SURFRECON_AUTH_ENABLED=true`` and two keys; yields (url, key a, key b)."""
    data = tmp_path_factory.mktemp("web-auth")
    keys = [_create_key(data / "state", name) for name in ("artist-a", "artist-b")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env.update(SURFRECON_RAY_NUM_CPUS="1", SURFRECON_EVENTS_POLL_S="0.1", SURFRECON_AUTH_ENABLED="true")
    with serve_process(data, env) as (url, _):
        yield url, *keys


@pytest.fixture
def new_page(browser, keyed_server):
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=keyed_server[0],
                                      accept_downloads=True)
        contexts.append(context)
        return context.new_page()

    yield make
    for c in contexts:
        c.close()


def test_keys_entered_once_kept_and_scoped(new_page, keyed_server, clouds, tmp_path):
    _, key_a, key_b = keyed_server
    page = new_page()
    open_page(page, "/")
    # Without a key the job list cannot load: the key field is opened and says why.
    page.wait_for_function("document.getElementById('key-error').textContent.length > 0")
    assert "needs a valid API key" in page.text_content("#jobs-error")
    assert page.evaluate("document.getElementById('key-box').open")

    # Submitting anyway: the server's 401 is shown at the key field.
    page.set_input_files("#file", str(clouds["sphere"]))
    page.select_option("#method", "poisson")
    page.check("input[name=preset][value=fast]")
    page.click("#submit")
    page.wait_for_function("document.getElementById('form-error').textContent.includes('API key')")
    assert page.evaluate("document.activeElement.id") == "api-key"

    # A wrong key is refused in the same words; the right one loads the (empty) list.
    page.fill("#api-key", "sr_not-a-key")
    page.press("#api-key", "Enter")
    page.wait_for_function("document.getElementById('key-error').textContent.includes('API key')")
    page.fill("#api-key", key_a)
    page.press("#api-key", "Enter")
    page.wait_for_function("document.getElementById('jobs').textContent.includes('No jobs yet')")
    assert page.text_content("#key-error") == "" and page.text_content("#jobs-error") == ""

    # The job runs and its progress streams with the key; the mesh is drawn and downloads.
    page.click("#submit")
    page.wait_for_function("document.getElementById('bar').dataset.status === 'succeeded'", timeout=90_000)
    page.wait_for_function("document.getElementById('view-info').textContent.includes('triangles')")
    assert drawn_fraction(page.locator("#viewport canvas").screenshot()) > 0.05
    with page.expect_download() as dl:
        page.locator("#downloads a[download='mesh.ply']").click()
    dl.value.save_as(tmp_path / "mesh.ply")
    radii = np.linalg.norm(load_mesh(tmp_path / "mesh.ply").vertices, axis=1)
    assert abs(radii.mean() - 1.0) < 0.05, radii.mean()
    job_id = page.url.split("#job=")[1]

    # Kept in the browser: after a reload the list shows the job without asking again.
    page.reload()
    assert page.input_value("#api-key") == key_a
    page.wait_for_function(f"document.querySelector(\"#jobs button[data-id='{job_id}']\") !== null")
    assert page.text_content("#key-error") == ""

    # Another person's key sees neither the job in the list nor the job itself.
    other = new_page()
    open_page(other, "/")
    other.fill("#api-key", key_b)
    other.press("#api-key", "Enter")
    other.wait_for_function("document.getElementById('jobs').textContent.includes('No jobs yet')")
    open_page(other, f"/#job={job_id}")
    other.reload()
    other.wait_for_function("document.getElementById('form-error').textContent.length > 0")
    assert "belongs to another API key" in other.text_content("#form-error")
    assert other.locator(f"#jobs button[data-id='{job_id}']").count() == 0
