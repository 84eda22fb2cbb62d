"""Test scaffolding shared by the tests and the benchmarks: exact references, not product code.

``render``: a CPU ground-truth ray caster that renders posed-image datasets of a mesh;
``analytic``: exact unsigned distance fields of simple shapes and samplers of their surfaces.
Tests import ``tests.support`` (pytest puts the repository root on ``sys.path``, see
``pythonpath`` in pyproject.toml); the scripts in ``bench/`` insert the root themselves.
"""
