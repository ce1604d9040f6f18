"""Generate ``docs/api.md`` from the numpy-style docstrings of convexsnn, with :mod:`inspect`.

Usage::

    python docs/build_api.py            # writes docs/api.md next to this script
    python docs/build_api.py --check    # exit 1 if docs/api.md is out of date
    python docs/build_api.py -o FILE    # write elsewhere

For every module in :data:`MODULES` the public names (its ``__all__``, or every public name
defined in it) are listed with their signature and docstring. Classes list their public methods
and properties defined on the class itself. The reStructuredText used in the docstrings is
translated to Markdown: section headers (``Parameters`` over a dashed line) become bold headings,
``name : type`` entries become list items, ``:math:`x``` becomes ``$x$``, ``.. math::`` blocks
become ``$$ ... $$`` blocks, cross-reference roles become code spans, and simple tables are kept
verbatim in a code block. No external documentation tool is needed.

A module that cannot be imported (an optional dependency is missing) is listed with the reason
instead of failing the build.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

#: modules documented, in order (layers from the bottom up, then the faces)
MODULES = [
    "convexsnn",
    "convexsnn.tasks",
    "convexsnn.lif",
    "convexsnn.surrogate",
    "convexsnn.network",
    "convexsnn.witnesses",
    "convexsnn.structured",
    "convexsnn.dictionary",
    "convexsnn.convex",
    "convexsnn.reconstruct",
    "convexsnn.selection",
    "convexsnn.train",
    "convexsnn.pipelines",
    "convexsnn.experiments",
    "convexsnn.export",
    "convexsnn.plots",
    "convexsnn.estimators",
    "convexsnn.cli",
]

_SECTION_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|ref|term):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_DOUBLE_BACKTICK = re.compile(r"``([^`]+)``")
_PARAM = re.compile(r"^([A-Za-z_*][\w*, ]*)\s*:\s*(.+)$")
_PARAM_SECTIONS = {"Parameters", "Returns", "Yields", "Raises", "Attributes", "Other Parameters",
                   "Warns", "Receives"}


def _inline(text: str) -> str:
    """Translate inline reST markup of one line to Markdown."""
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1] if '~' in m.group(0) else m.group(1)}`",
                     text)
    text = _DOUBLE_BACKTICK.sub(lambda m: f"`{m.group(1)}`", text)
    return text


def _description(desc: list[str]) -> list[str]:
    """Indented Markdown lines for the description of one parameter entry.

    Paragraphs are joined into single lines; bullet items (``*`` or ``-``) become nested items.
    """
    out: list[str] = []
    para: list[str] = []

    def flush():
        if para:
            out.append("  " + _inline(" ".join(para)))
            para.clear()

    for d in desc:
        if not d:
            flush()
            continue
        if d.startswith(("* ", "- ")):
            flush()
            para.append("-" + d[1:])
            continue
        para.append(d)
    flush()
    # a bullet after a paragraph needs its own line in Markdown
    return [line if not line.startswith("  -") else "    " + line.strip() for line in out]


def rst_to_markdown(doc: str) -> str:
    """Convert a (dedented) numpy-style docstring to Markdown.

    Parameters
    ----------
    doc : str
        The docstring, as returned by :func:`inspect.getdoc`.

    Returns
    -------
    str
        Markdown text.
    """
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    section = None
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        # section header
        if line.strip() and _SECTION_UNDERLINE.match(nxt) and len(nxt.strip()) >= 3:
            section = line.strip()
            out.extend(["", f"**{section}**", ""])
            i += 2
            continue
        # math block
        if line.strip().startswith(".. math::"):
            rest = line.strip()[len(".. math::"):].strip()
            block = [rest] if rest else []
            base = len(line) - len(line.lstrip())
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > base):
                block.append(lines[i].strip())
                i += 1
            body = "\n".join(b for b in block if b)
            out.extend(["", "$$", body, "$$", ""])
            continue
        # simple reST table -> verbatim
        if _TABLE_RULE.match(line):
            block = []
            rules = 0
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                if _TABLE_RULE.match(lines[i]):
                    rules += 1
                i += 1
                if rules == 3:
                    break
            out.extend(["", "```", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""])
            continue
        # literal block introduced by '::'
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            text = line.rstrip()[:-1]
            if text.strip() == ":":
                text = ""
            out.append(_inline(text))
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out.extend(["", "```", *textwrap.dedent("\n".join(block)).strip("\n").splitlines(),
                        "```", ""])
            continue
        # parameter entry
        if section in _PARAM_SECTIONS and line and not line.startswith((" ", "\t")):
            m = _PARAM.match(line.strip())
            if m:
                out.append(f"- `{m.group(1).strip()}` : *{_inline(m.group(2).strip())}*")
            else:
                out.append(f"- `{line.strip()}`")
            i += 1
            desc = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                if not lines[i].strip():
                    # a blank line ends the entry unless more indented text follows
                    if i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t")):
                        desc.append("")
                        i += 1
                        continue
                    break
                desc.append(lines[i].strip())
                i += 1
            out.extend(_description(desc))
            continue
        out.append(_inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    # object reprs with memory addresses make the output unstable
    return re.sub(r" at 0x[0-9a-f]+", "", sig)


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace(".", "-").replace(" ", "-"))


def _public_names(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items()
                 if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
                 and (inspect.isclass(v) or inspect.isfunction(v))]
    return list(names)


def _doc(obj) -> str:
    d = inspect.getdoc(obj)
    return rst_to_markdown(d) if d else "*(no docstring)*"


def _class_members(cls) -> list[tuple[str, object]]:
    """Public members defined by ``cls`` or by its convexsnn base classes (first wins)."""
    seen: dict[str, object] = {}
    for klass in cls.__mro__:
        if klass is object or not getattr(klass, "__module__", "").startswith("convexsnn"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__call__":
                continue
            seen.setdefault(name, member)
    return list(seen.items())


def _document_class(qual: str, cls) -> list[str]:
    out = [f"### class `{qual}{_signature(cls)}`", "", _doc(cls), ""]
    for name, member in _class_members(cls):
        if isinstance(member, property):
            out += [f"#### property `{name}`", "", _doc(member.fget) if member.fget else "", ""]
        elif isinstance(member, (classmethod, staticmethod)):
            fn = member.__func__
            kind = "classmethod" if isinstance(member, classmethod) else "staticmethod"
            out += [f"#### {kind} `{name}{_signature(fn)}`", "", _doc(fn), ""]
        elif inspect.isfunction(member):
            out += [f"#### `{name}{_signature(member)}`", "", _doc(member), ""]
        elif inspect.isfunction(getattr(member, "fn", None)):   # sklearn's available_if
            out += [f"#### `{name}{_signature(member.fn)}`", "", _doc(member.fn), ""]
    return out


def document_module(modname: str) -> list[str]:
    """Markdown lines documenting one module."""
    out = [f"## `{modname}`", ""]
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        return out + [f"*Not importable here: {exc}.*", ""]
    if mod.__doc__:
        out += [rst_to_markdown(inspect.cleandoc(mod.__doc__)), ""]
    for name in _public_names(mod):
        obj = getattr(mod, name, None)
        if obj is None:
            continue
        qual = f"{modname}.{name}"
        home = getattr(obj, "__module__", None) or modname
        if (inspect.isclass(obj) or callable(obj)) and home != modname and home in MODULES:
            out += [f"- `{name}`: see [`{home}`](#{_anchor(home)})", ""]
            continue
        if inspect.isclass(obj):
            out += _document_class(qual, obj)
        elif callable(obj):
            out += [f"### `{qual}{_signature(obj)}`", "", _doc(obj), ""]
        elif inspect.ismodule(obj):
            continue
        else:
            text = repr(obj)
            if len(text) > 200:
                text = text[:200] + " ..."
            out += [f"- `{name}` = `{text}`", ""]
    if hasattr(mod, "build_parser") and modname.endswith(".cli"):
        out += _cli_usage(mod.build_parser())
    return out


def _cli_usage(parser) -> list[str]:
    """The ``--help`` text of the command and of every subcommand, as code blocks."""
    import argparse
    import os
    os.environ.setdefault("COLUMNS", "100")
    out = ["### Command-line usage", "", "```", parser.format_help().rstrip(), "```", ""]

    def walk(p, prefix):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.extend([f"#### `{prefix} {name}`", "", "```",
                                sub.format_help().rstrip(), "```", ""])
                    walk(sub, f"{prefix} {name}")

    walk(parser, parser.prog)
    return out


def build(modules: list[str] = MODULES) -> str:
    """The whole ``api.md`` as a string."""
    head = ["# convexsnn API reference", "",
            "Generated by `python docs/build_api.py` from the docstrings; do not edit by hand.",
            "", "Modules:", ""]
    head += [f"- [`{m}`](#{_anchor(m)})" for m in modules] + [""]
    body: list[str] = []
    for m in modules:
        body += document_module(m)
    return "\n".join(head + body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default=str(Path(__file__).with_name("api.md")))
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the output file differs from what would be generated")
    args = p.parse_args(argv)
    import logging
    logging.getLogger("convexsnn").setLevel(logging.ERROR)
    text = build()
    out = Path(args.output)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date; run python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
