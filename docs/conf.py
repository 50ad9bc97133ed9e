"""Sphinx configuration of the dense_xp documentation site.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the ``docs`` extra).
"""

from __future__ import annotations

import inspect
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


def _private(cls: type) -> bool:
    return cls.__name__.startswith("_")


def _mixin_pages() -> dict[str, str]:
    """The class pages that list what their class inherits from its private bases (mixins).

    ``Sequential`` takes ``parameters`` from ``_ModelArrays``, for one: its
    page lists those members as its own. Each public class of the dense_xp
    modules imported by now that has such a base maps its page to the
    classes whose members the page leaves out: its public bases (documented
    on their own pages) and their bases. The class template passes them to
    ``:inherited-members:``.
    """
    pages = {}
    for name, module in list(sys.modules.items()):
        if name != "dense_xp" and not name.startswith("dense_xp."):
            continue
        for attr in getattr(module, "__all__", ()):
            cls = getattr(module, attr, None)
            if not inspect.isclass(cls) or _private(cls):
                continue
            left_out = {k.__name__ for base in cls.__mro__[1:] if not _private(base) for k in base.__mro__}
            if any(base.__name__ not in left_out for base in cls.__mro__[1:]):
                pages[f"{name}.{attr}"] = ", ".join(sorted(left_out))
    return pages


autosummary_context = {"mixin_pages": _mixin_pages()}

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


def _public_bases(app: object, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show a class's public bases: a private base (a mixin) gives way to its own bases."""
    if not any(_private(base) for base in bases):
        return
    public: list[type] = []
    todo = list(bases)
    while todo:
        base = todo.pop(0)
        if _private(base):
            todo[:0] = base.__bases__
        elif base not in public:
            public.append(base)
    bases[:] = [base for base in public if base is not object] or [object]


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_metadata_requests)  # type: ignore[attr-defined]
    app.connect("autodoc-process-bases", _public_bases)  # type: ignore[attr-defined]
