"""Imported by every Python process started with this folder on PYTHONPATH (see stage_hooks.py).

It does nothing unless ``SURFRECON_STAGE_HOOKS`` names a rules file; then it arranges for the
job worker module to be patched when (and if) the process imports it.
"""

import os

if os.environ.get("SURFRECON_STAGE_HOOKS"):
    import stage_hooks

    stage_hooks.install()
