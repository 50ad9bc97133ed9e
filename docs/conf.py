"""Sphinx configuration of the dense_xp documentation site.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the ``docs`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dense_xp

project = "dense_xp"
author = "the dense_xp developers"
copyright = "2026, the dense_xp developers"
version = release = dense_xp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",  # reads CHANGELOG.md (docs/changelog.rst)
]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
default_role = "code"  # `x` in the docstrings is inline code, as on GitHub

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc sections already say what each parameter is
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # members come from the class template
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = f"dense_xp {version}"
html_theme_options = {
    "github_url": "https://github.com/dense-xp/dense-xp",
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []


def _skip_metadata_requests(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Leave out the ``set_*_request`` methods scikit-learn adds to every estimator (they cite its site)."""
    return True if name.startswith("set_") and name.endswith("_request") else None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_metadata_requests)  # type: ignore[attr-defined]
