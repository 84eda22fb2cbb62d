"""Build hook (the rest of the metadata is in pyproject.toml): a built package carries the web
page's three.js files, copied from npm's ``node_modules`` into ``service/web/vendor/three``, so
that an installed wheel serves the whole page. Editable installs serve ``node_modules`` itself.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _webassets():
    # By path: the package is not installed yet, and importing it would import its dependencies.
    spec = importlib.util.spec_from_file_location("_surfrecon_webassets", ROOT / "service" / "webassets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithWebPage(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        assets = _webassets()
        files = assets.vendor_three(ROOT / "service" / "web", Path(self.build_lib) / "service" / "web" / "vendor")
        print(f"vendored {len(files)} three.js files for the web page")


setup(cmdclass={"build_py": BuildPyWithWebPage})
