"""Fixtures for the browser tests: Debian's Chromium driven by playwright against a real
``surfrecon serve`` process (its own SQLite, artifact directory and local Ray).

WebGL runs on SwiftShader (software), so the viewer draws in a headless browser on a
machine without a GPU. Playwright never downloads a browser here: the tests use
``/usr/bin/chromium`` and skip, saying why, when it is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from svc_helpers import serve_process, sphere_points
from web_helpers import BROWSER_ARGS, CHROMIUM


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def web_server(tmp_path_factory) -> str:
    """``surfrecon serve`` on a free port with one Ray CPU; yields its base URL."""
    data = tmp_path_factory.mktemp("web")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env.update(SURFRECON_RAY_NUM_CPUS="1", SURFRECON_EVENTS_POLL_S="0.1")
    with serve_process(data, env) as (url, _):
        yield url


@pytest.fixture
def page(browser, web_server):
    """A fresh page (own storage) on the served app; fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=web_server)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


@pytest.fixture(scope="session")
def clouds(tmp_path_factory) -> dict[str, Path]:
    """A 2000-point unit sphere (.xyz), a malformed .xyz and a file of an unknown kind."""
    d = tmp_path_factory.mktemp("clouds")
    files = {"sphere": d / "sphere.xyz", "malformed": d / "broken.xyz", "unsupported": d / "cloud.abc"}
    np.savetxt(files["sphere"], sphere_points(2000, seed=3), fmt="%.6f")
    files["malformed"].write_text("0.1 0.2 0.3\n0.4 zero 0.6\n")
    files["unsupported"].write_text("whatever\n")
    return files
