"""Sphinx configuration: the API reference from the numpy-style docstrings (autodoc + numpydoc),
with the Markdown pages (quickstart, method) read by MyST.

Build (warnings are errors; tests/test_docs.py runs the same)::

    pip install -e ".[docs]"
    sphinx-build -W -b html docs docs/_build/html
"""

import os
import sys

# document the source tree next to this file, whichever convexsnn is installed
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import convexsnn  # noqa: E402

project = "convexsnn"
author = "convexsnn developers"
copyright = "convexsnn developers"
release = convexsnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown pages: $...$ / $$...$$ math (docs/method.md), heading anchors for links.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# autodoc: members in source order; the signature's annotations are also shown in the
# numpydoc "Parameters" sections, so they are not repeated in the signature.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Optional dependencies are not needed to build the reference.
autodoc_mock_imports = ["nir", "sklearn", "matplotlib", "cvxpy", "clarabel"]

# numpydoc: no per-member autosummary tables (autodoc lists the members); no validation beyond
# what the build itself checks.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Cross-references to objects outside the documented API (torch.Tensor, numpy arrays, ...) are
# not resolved: nitpicky mode stays off because no intersphinx inventory is reachable offline.
nitpicky = False

html_theme = "alabaster"
html_title = f"convexsnn {release}"
