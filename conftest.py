"""Fixtures for every test directory: tests/ and demo_site/tests/ (pyproject's testpaths)."""

pytest_plugins = ["tests.support.fixtures", "tests.support.browser"]
