"""The program text of a decorated function, and what static analysis can tell about it. Pure.

**Export = production = replay.** The ``builder.code`` exported for a feature is the decorated
function's own source: :func:`function_source` reads it with :func:`inspect.getsource`, dedents
it and strips the decorator lines (comments and formatting inside the function are kept; the
name is kept too, since the engine accepts any name). Replay then runs *that text* compiled by
the engine's :func:`~raptor.engine.programs.compile_program`, never the Python function object,
so what a notebook replays is what production runs.

A program runs alone in production: only its parameters, its own imports and the engine's
program globals (``datetime`` the module, ``math``, ``json``, ``re``...) exist there.
:func:`free_names` lists the names a function reads from outside itself, so a decorator can
reject a module constant or a helper that production would not have.

Replay optimisations that must not change results are decided here, on the AST:

* :func:`row_fields` — the literal fields a program reads (``row["a"]``, ``row.get("a")``,
  ``"a" in row``); when the row is used any other way (passed on, iterated, ``len``...) the
  answer is None and replay builds whole rows.
* :func:`ctx_attributes` — the ``ctx`` attributes a program reads, or None when ``ctx`` escapes;
  when it does not escape, replay may reuse one context object and skip unread attributes.
* :func:`projection` — the field ``f`` when the whole body is ``return row["f"]``: replay can
  then take the column itself (type-checked like :meth:`Primitive.check`) instead of calling
  the program once per row.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FunctionSource",
    "ctx_attributes",
    "free_names",
    "function_source",
    "location",
    "projection",
    "row_fields",
]


@dataclass(frozen=True)
class FunctionSource:
    """A function's exported program text and where it came from."""

    name: str
    code: str
    tree: ast.FunctionDef
    file: str | None
    line: int | None
    docstring: str | None

    @property
    def params(self) -> tuple[str, ...]:
        a = self.tree.args
        return tuple(p.arg for p in (*a.posonlyargs, *a.args))

    @property
    def where(self) -> str:
        """``file.py:12`` (or the function name when the file is unknown)."""
        if self.file is None:
            return self.name
        return f"{self.file}:{self.line}" if self.line else self.file


def location(obj: Any) -> str:
    """``file:line`` of a function or class, best effort, for error messages."""
    target = inspect.unwrap(obj) if callable(obj) else obj
    try:
        file = inspect.getsourcefile(target)
        _, line = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return getattr(target, "__qualname__", repr(target))
    return f"{file}:{line}"


def function_source(func: Callable[..., Any]) -> FunctionSource:
    """The program text of ``func``: its source, dedented, without decorator lines.

    Raises ``OSError`` when Python cannot find the source (a function typed into a plain
    interpreter or built by ``exec``), ``SyntaxError``/``ValueError`` when it is not a plain
    ``def``.
    """
    target = inspect.unwrap(func)
    lines, first = inspect.getsourcelines(target)
    text = textwrap.dedent("".join(lines))
    module = ast.parse(text)
    node = next(
        (n for n in module.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None
    )
    if node is None:
        raise ValueError(f"{getattr(target, '__qualname__', target)!r} is not a def")
    if isinstance(node, ast.AsyncFunctionDef):
        raise ValueError(f"{node.name} must be a plain def, not async def")
    end = node.end_lineno or len(text.splitlines())
    body_lines = text.splitlines(keepends=True)[node.lineno - 1 : end]
    code = textwrap.dedent("".join(body_lines))
    if not code.endswith("\n"):
        code += "\n"
    tree = ast.parse(code).body[0]
    assert isinstance(tree, ast.FunctionDef)
    try:
        file: str | None = inspect.getsourcefile(target)
    except TypeError:
        file = None
    return FunctionSource(
        name=tree.name,
        code=code,
        tree=tree,
        file=file,
        line=first + node.lineno - 1 if first else None,
        docstring=ast.get_docstring(tree),
    )


def _bound(tree: ast.AST) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            continue
    return bound


def _body_nodes(tree: ast.FunctionDef) -> Iterator[ast.AST]:
    """Every node of the body and of nested code, without the top-level annotations."""
    for stmt in tree.body:
        yield from ast.walk(stmt)


def free_names(tree: ast.FunctionDef) -> list[str]:
    """Names the function body reads but never binds (sorted). Pure.

    Scoping is simplified (a name bound anywhere in the function counts as bound), which can
    only hide a problem the engine would then report at run time, never invent one.
    """
    bound = _bound(tree)
    loads = {
        n.id for n in _body_nodes(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return sorted(loads - bound)


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return parents


def _rebinds(tree: ast.FunctionDef, name: str) -> bool:
    """True when ``name`` is assigned, deleted or shadowed anywhere in the function."""
    for node in _body_nodes(tree):
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return True
        if isinstance(node, ast.arg) and node.arg == name:
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name) == name:
            return True
    return False


def _str_const(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def row_fields(tree: ast.FunctionDef, row: str) -> frozenset[str] | None:
    """The literal row fields read by the function, or None when ``row`` is used otherwise."""
    if _rebinds(tree, row):
        return None
    parents = _parents(tree)
    fields: set[str] = set()
    for node in _body_nodes(tree):
        if not (isinstance(node, ast.Name) and node.id == row):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.Subscript) and parent.value is node:
            key = _str_const(parent.slice)
            if key is None or not isinstance(parent.ctx, ast.Load):
                return None
            fields.add(key)
            continue
        if isinstance(parent, ast.Attribute) and parent.attr == "get":
            call = parents.get(id(parent))
            if isinstance(call, ast.Call) and call.func is parent and call.args:
                key = _str_const(call.args[0])
                if key is not None:
                    fields.add(key)
                    continue
            return None
        if (
            isinstance(parent, ast.Compare)
            and len(parent.ops) == 1
            and isinstance(parent.ops[0], ast.In | ast.NotIn)
            and parent.comparators[0] is node
        ):
            key = _str_const(parent.left)
            if key is None:
                return None
            fields.add(key)
            continue
        return None
    return frozenset(fields)


def ctx_attributes(tree: ast.FunctionDef, ctx: str) -> frozenset[str] | None:
    """The attributes read on ``ctx`` (``timestamp``, ``keys``, ``get_feature``...), or None
    when ``ctx`` itself escapes (passed on, stored, returned)."""
    if _rebinds(tree, ctx):
        return None
    parents = _parents(tree)
    attrs: set[str] = set()
    for node in _body_nodes(tree):
        if isinstance(node, ast.Name) and node.id == ctx:
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute) and parent.value is node:
                attrs.add(parent.attr)
                continue
            return None
    return frozenset(attrs)


def projection(tree: ast.FunctionDef, row: str) -> str | None:
    """``f`` when the function body is exactly ``return row["f"]`` (after a docstring)."""
    body = list(tree.body)
    if body and ast.get_docstring(tree) is not None:
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return None
    value = body[0].value
    if (
        isinstance(value, ast.Subscript)
        and isinstance(value.value, ast.Name)
        and value.value.id == row
    ):
        return _str_const(value.slice)
    return None
