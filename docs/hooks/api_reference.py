"""MkDocs hook for the API pages: option tables of configuration dataclasses, and Sphinx roles made plain.

``<!-- fields: ktae.core.config.KTAEConfig -->`` in a page becomes a table of the dataclass's fields (name, type,
default, help), read from the source file's ``field(..., metadata={"help": ...})`` / ``option(default, help)``
declarations at build time, so the table is never a hand-kept copy and no optional dependency is imported.
The docstrings cross-reference in Sphinx style (``:func:`explain```); mkdocstrings shows such roles as text, so
the role prefix is dropped from the rendered HTML.
"""
from __future__ import annotations

import ast
import html
import re
from pathlib import Path

MARKER = re.compile(r"<!-- fields: ([\w.]+) -->")
ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code|<a )")


def _cell(text: str) -> str:
    text = html.escape(text, quote=False)
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _literal(node: ast.AST | None) -> str:
    return "" if node is None else ast.unparse(node)


def _declared(call: ast.Call) -> tuple[str, str]:
    """``(default source, help)`` of a ``field(...)`` or ``option(default, help)`` call."""
    name = getattr(call.func, "id", getattr(call.func, "attr", ""))
    keywords = {k.arg: k.value for k in call.keywords}
    if name == "option":
        default = call.args[0] if call.args else keywords.get("default")
        help_node = call.args[1] if len(call.args) > 1 else keywords.get("help")
    else:
        default = keywords.get("default", keywords.get("default_factory"))
        metadata = keywords.get("metadata")
        help_node = None
        if isinstance(metadata, ast.Dict):
            for key, value in zip(metadata.keys, metadata.values):
                if isinstance(key, ast.Constant) and key.value == "help":
                    help_node = value
        if "default_factory" in keywords and default is not None:
            return f"{_literal(default)}()", _text(help_node)
    return _literal(default), _text(help_node)


def _text(node: ast.AST | None) -> str:
    """A help string: a constant, implicitly joined constants, or an f-string shown with its expressions."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    return ast.unparse(node)


def fields_table(dotted: str, src: Path) -> str:
    """The Markdown table of the dataclass ``dotted`` (``package.module.Class``) defined under ``src``."""
    module, _, name = dotted.rpartition(".")
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise ValueError(f"{dotted}: no class {name} in {path}")
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        annotation = ast.unparse(stmt.annotation)
        if annotation.startswith("ClassVar"):
            continue
        if isinstance(stmt.value, ast.Call) and getattr(stmt.value.func, "id", "") in ("field", "option"):
            default, meaning = _declared(stmt.value)
        else:
            default, meaning = _literal(stmt.value), ""
        rows.append(f"| `{stmt.target.id}` | `{annotation}` | {'`' + default + '`' if default else ''} | "
                    f"{_cell(meaning)} |")
    if len(rows) == 2:
        raise ValueError(f"{dotted}: no fields found in {path}")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    """Replace each ``<!-- fields: ... -->`` marker with its table (MkDocs ``on_page_markdown`` event)."""
    src = Path(config["config_file_path"]).parent / "src"
    return MARKER.sub(lambda m: fields_table(m.group(1), src), markdown)


def on_page_content(html_text, page, config, files):
    """Drop Sphinx role prefixes left in rendered docstrings (MkDocs ``on_page_content`` event)."""
    return ROLE.sub("", html_text)
