"""The web page's files: where the served three.js comes from, and how a build vendors it.

The page (``service/web/index.html`` and ``service/web/app/*.js``) is plain ES modules. Its
import map sends ``three`` and ``three/addons/`` to ``/web/vendor/three/...``. In a checkout
those files are npm's ``service/web/node_modules/three``; a wheel or an image carries only the
files the page really loads, copied at build time into ``service/web/vendor/three`` (the build
hook in ``setup.py`` calls :func:`vendor_three`). At run time :func:`three_dir` picks whichever
exists, the vendored copy first.

Nothing here imports the rest of the package: ``setup.py`` loads this file by path before the
package is installed.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent / "web"
VENDOR_URL = "/web/vendor/three/"
"""Where the import map points ``three``; the vendored tree mirrors the npm package below it."""
APP_URL = "/web/"
"""Where the page's own modules are served (``service/web/app``)."""

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# Static imports and re-exports (``import x from 'm'``, ``export {a} from 'm'``, ``import 'm'``),
# at the start of a line so that examples inside strings or comments do not count.
_STATIC = re.compile(r"^\s*(?:import|export)\b(?:[^;'\"]*?\bfrom)?\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DYNAMIC = re.compile(r"\bimport\(\s*['\"]([^'\"]+)['\"]\s*\)")
_WORKER = re.compile(r"\bnew\s+(?:Shared)?Worker\(\s*['\"]([^'\"]+)['\"]")
_IMPORT_MAP = re.compile(r"<script\s+type=\"importmap\"\s*>(.*?)</script>", re.DOTALL)


def three_dir(web_dir: Path = WEB_DIR) -> Path:
    """The directory served at ``/web/vendor/three``: the vendored copy of a built package, or
    npm's ``node_modules/three`` in a checkout (it may be missing; the page then says so)."""
    vendored = web_dir / "vendor" / "three"
    return vendored if vendored.is_dir() else web_dir / "node_modules" / "three"


def module_specifiers(source: str) -> list[str]:
    """Module specifiers a JavaScript module loads: static and dynamic imports, re-exports and
    module workers, in order of appearance (duplicates kept out)."""
    text = _BLOCK_COMMENT.sub("", source)
    found = [m.group(1) for rx in (_STATIC, _DYNAMIC, _WORKER) for m in rx.finditer(text)]
    return list(dict.fromkeys(found))


def import_map(index_html: str) -> dict[str, str]:
    """The ``imports`` of the page's ``<script type="importmap">`` (empty when there is none)."""
    m = _IMPORT_MAP.search(index_html)
    return dict(json.loads(m.group(1)).get("imports", {})) if m else {}


def resolve(specifier: str, importer_url: str, imports: dict[str, str]) -> str:
    """The URL path a browser fetches for ``specifier`` imported by the module at ``importer_url``:
    relative and absolute paths as URLs, bare names through the import map (an exact key, or the
    longest key ending in ``/`` that prefixes it). ValueError for a bare name the map lacks."""
    if specifier.startswith(("./", "../")):
        return posixpath.normpath(posixpath.join(posixpath.dirname(importer_url), specifier))
    if specifier.startswith("/"):
        return posixpath.normpath(specifier)
    if specifier in imports:
        return imports[specifier]
    prefixes = [k for k in imports if k.endswith("/") and specifier.startswith(k)]
    if not prefixes:
        raise ValueError(f"expected {specifier!r} in the page's import map, got keys {sorted(imports)}")
    key = max(prefixes, key=len)
    return imports[key] + specifier[len(key):]


def page_closure(web_dir: Path, three: Path) -> dict[str, Path]:
    """Every module URL the page can load, starting from all of its own modules, mapped to its
    file (``app/`` for ``/web/...``, ``three`` for ``/web/vendor/three/...``). FileNotFoundError
    names a module that is imported but missing."""
    imports = import_map((web_dir / "index.html").read_text(encoding="utf-8"))
    todo = [APP_URL + p.name for p in sorted((web_dir / "app").glob("*.js"))]
    seen: dict[str, Path] = {}
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        if url.startswith(VENDOR_URL):
            path = three / url[len(VENDOR_URL):]
        elif url.startswith(APP_URL):
            path = web_dir / "app" / url[len(APP_URL):]
        else:
            raise ValueError(f"expected a module under {APP_URL}, got {url!r}")
        if not path.is_file():
            raise FileNotFoundError(f"the page loads {url}, but {path} does not exist")
        seen[url] = path
        todo += [resolve(s, url, imports) for s in module_specifiers(path.read_text(encoding="utf-8"))]
    return seen


def locked_three_version(web_dir: Path) -> str:
    """The three.js version ``package-lock.json`` pins."""
    lock = json.loads((web_dir / "package-lock.json").read_text(encoding="utf-8"))
    return lock["packages"]["node_modules/three"]["version"]


def ensure_node_modules(web_dir: Path) -> Path:
    """npm's ``three`` at the locked version, running ``npm ci`` when it is missing or another
    version. RuntimeError with npm's message when npm is missing or fails."""
    three = web_dir / "node_modules" / "three"
    want = locked_three_version(web_dir)
    have = None
    if (three / "package.json").is_file():
        have = json.loads((three / "package.json").read_text(encoding="utf-8")).get("version")
    if have == want:
        return three
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"building the web page needs three.js {want} from npm, and npm is not installed "
                           "(install Node.js and npm, or run `npm ci` in service/web beforehand)")
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                          check=False, cwd=web_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`npm ci` in {web_dir} failed:\n{proc.stdout}{proc.stderr}")
    return three


def vendor_three(web_dir: Path, out_dir: Path) -> list[str]:
    """Copy the three.js files the page loads (and three's licence) into ``out_dir/three``,
    replacing what was there; returns their paths relative to ``out_dir/three``."""
    three = ensure_node_modules(web_dir)
    files = {url[len(VENDOR_URL):]: path for url, path in page_closure(web_dir, three).items()
             if url.startswith(VENDOR_URL)}
    files["LICENSE"] = three / "LICENSE"
    dest = out_dir / "three"
    if dest.exists():
        shutil.rmtree(dest)
    for rel, src in sorted(files.items()):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)
    return sorted(files)
