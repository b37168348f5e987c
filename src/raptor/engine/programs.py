"""Feature programs: loading, policy lint, annotation check, dependencies (SPEC 4.1).

A Feature's ``spec.builder.code`` holds one function ``def handler(row, ctx) -> T`` (the
parameter names are free; upstream samples use ``data``). :func:`compile_program` turns it into a
frozen :class:`Program`, checking everything **statically** on the AST; the only user code that
runs at load time is the final ``exec`` of the module body (the ``def`` and its imports) that
yields the function object. Rejections are :class:`~raptor.errors.ProgramError` on
``spec.builder.code`` naming the feature and the line; policy findings are collected and
reported together.

Checks, in order: syntax; module shape (one top-level ``def``, plus imports and docstrings only;
no decorators; exactly two positional parameters; not a generator); policy lint — blocked
imports (:data:`BLOCKED_IMPORTS`, top-level package match, unless in ``allowed_imports``),
blocked builtins (:data:`BLOCKED_BUILTINS`, unless the program binds the name itself; they are
also absent from the program's builtins), dunder attributes/names (``__class__``,
``__globals__``..., ``getattr(x, "__...")``), recursion (a cycle in the call graph of the
program's named functions, found with :func:`find_cycle`); the return annotation against
``spec.primitive``. The lint is a policy aid, **not a security boundary**: programs are trusted
code reviewed like the rest of a manifest.

The module is compiled with ``from __future__ import annotations`` so annotations are never
evaluated; the program's globals hold ``datetime`` (the module), ``timedelta``, ``timezone``,
``math``, ``json``, ``re`` and typing's ``List, Dict, Optional, Tuple, Any, Union``.

Dependencies: ``<ctx>.get_feature("literal", ...)`` and ``<ctx>.get_prediction("literal", ...)``
calls on the second parameter give :attr:`Program.dependencies` (selectors parsed in the feature's
namespace, de-duplicated, in order of appearance). A call with a non-literal selector, a
``get_feature``/``get_prediction`` reached any other way, sets
:attr:`Program.dynamic_dependencies` (cycle checks cannot see through it).

Running and return forms live in :mod:`raptor.engine.context`, the executor in
:mod:`raptor.engine.executor` (both re-exported here):
a program returns ``value``, ``(value, keys)`` or ``(value, keys, timestamp)``; upstream's
``(value, timestamp, keys)`` order is accepted only when it is unambiguous by type (2nd item a
``datetime``, 3rd a ``str`` or dict).
"""

from __future__ import annotations
import __future__

import ast
import builtins
import datetime as _datetime_module
import json
import math
import re
import textwrap
import typing
from collections.abc import Collection, Iterable, Sequence
from datetime import timedelta, timezone
from typing import Any

from raptor.api.names import Selector, parse_selector
from raptor.api.primitives import Primitive
from raptor.engine.context import Context, Program, ProgramResult
from raptor.engine.dependencies import check_packages, find_cycle
from raptor.engine.executor import ProgramExecutor
from raptor.errors import ProgramError, SelectorError

__all__ = [
    "BLOCKED_BUILTINS",
    "BLOCKED_IMPORTS",
    "Context",
    "Program",
    "ProgramExecutor",
    "ProgramResult",
    "check_packages",
    "compile_program",
    "find_cycle",
]

# fmt: off
BLOCKED_IMPORTS: frozenset[str] = frozenset({
    # I/O, processes, interpreter internals
    "os", "sys", "subprocess", "socket", "shutil", "pathlib", "io", "importlib", "ctypes",
    "multiprocessing", "threading", "_thread", "asyncio", "concurrent", "signal", "pickle",
    "marshal", "shelve", "dbm", "sqlite3", "tempfile", "glob", "fcntl", "mmap", "pty", "resource",
    "select", "selectors", "ssl", "builtins", "gc", "inspect", "runpy", "code", "codeop",
    "pkgutil", "zipimport", "webbrowser", "socketserver", "ftplib", "smtplib", "poplib",
    "imaplib", "telnetlib", "xmlrpc",
    # network clients
    "requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "grpc", "redis", "boto3",
    "botocore",
    # datasets and modelling
    "pandas", "numpy", "sklearn", "scipy", "torch", "tensorflow", "keras", "jax", "xgboost",
    "lightgbm", "catboost", "statsmodels", "polars", "pyarrow",
    # the engine itself
    "raptor",
})
# fmt: on
"""Top-level packages a program may not import unless the runtime allows them."""

# fmt: off
BLOCKED_BUILTINS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input",
    "breakpoint", "exit", "quit",
})
# fmt: on
"""Builtins a program may not call (nor reach: they are removed from its builtins)."""

_ALLOWED_DUNDERS = frozenset({"__name__", "__doc__"})
_REFLECTION = frozenset({"getattr", "setattr", "delattr", "hasattr"})
_FIELD = "spec.builder.code"
_GETTERS = frozenset({"get_feature", "get_prediction"})

_BUILTINS = {
    k: v for k, v in vars(builtins).items() if k not in BLOCKED_BUILTINS or k == "__import__"
}  # ``import`` statements need __import__; calling it by name is linted
_GLOBALS: dict[str, Any] = {
    "datetime": _datetime_module,
    "timedelta": timedelta,
    "timezone": timezone,
    "math": math,
    "json": json,
    "re": re,
    **{
        name: getattr(typing, name)
        for name in ("List", "Dict", "Optional", "Tuple", "Any", "Union")
    },
}

_SCALAR_ANNOTATIONS = {
    "str": Primitive.STRING,
    "int": Primitive.INT,
    "float": Primitive.FLOAT,
    "bool": Primitive.BOOL,
    "datetime": Primitive.TIMESTAMP,
    "datetime.datetime": Primitive.TIMESTAMP,
}
_LIST_NAMES = frozenset({"list", "List", "typing.List"})
_OPTIONAL_NAMES = frozenset({"Optional", "typing.Optional"})
_UNION_NAMES = frozenset({"Union", "typing.Union"})
_EXPECTED = {p: name for name, p in _SCALAR_ANNOTATIONS.items() if "." not in name}
_FAST = {Primitive.STRING: str, Primitive.INT: int, Primitive.FLOAT: float, Primitive.BOOL: bool}


def _expected_annotation(primitive: Primitive) -> str:
    scalar = _EXPECTED[primitive.scalar]
    return f"list[{scalar}]" if primitive.is_list else scalar


# --------------------------------------------------------------------------------------------
# Loading


def _fail(fqn: str, problem: str, line: int | None = None) -> ProgramError:
    where = f" (line {line})" if line is not None else ""
    return ProgramError(f"feature {fqn}: {problem}{where}", field=_FIELD)


def compile_program(
    code: str,
    *,
    fqn: str,
    namespace: str,
    primitive: Primitive,
    keys: Sequence[str] = (),
    allowed_imports: Collection[str] = (),
) -> Program:
    """Check ``code`` statically and load it as a :class:`Program` (see the module docstring).

    ``keys`` are the feature's key names (a bare key returned by the program needs exactly one);
    ``allowed_imports`` lifts :data:`BLOCKED_IMPORTS` for those top-level packages.
    """
    filename = f"<feature {fqn}>"
    if not isinstance(code, str) or not code.strip():
        raise _fail(fqn, "builder.code is empty; expected def handler(row, ctx) -> T")
    source = textwrap.dedent(code)
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise _fail(fqn, f"syntax error: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # e.g. null bytes
        raise _fail(fqn, f"cannot parse the code: {exc}") from None
    func = _the_function(tree, fqn, primitive)
    params = _parameters(func, fqn)

    problems = _lint(tree, {p.split(".")[0] for p in allowed_imports})
    problems += _recursion(tree)
    problems += _annotation(func, primitive)
    if problems:
        problems.sort(key=lambda p: p[1])
        raise ProgramError(
            f"feature {fqn}: " + "; ".join(f"{text} (line {line})" for text, line in problems),
            field=_FIELD,
        )
    dependencies, dynamic = _dependencies(tree, params[1], namespace, fqn)

    try:
        code_obj = compile(
            tree, filename, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True
        )
    except SyntaxError as exc:
        raise _fail(fqn, f"syntax error: {exc.msg}", exc.lineno) from None
    namespace_dict: dict[str, Any] = {
        **_GLOBALS,
        "__builtins__": _BUILTINS,
        "__name__": f"raptor.programs.{fqn}",
    }
    try:
        exec(code_obj, namespace_dict)
    except Exception as exc:
        raise _fail(fqn, f"loading the program failed: {type(exc).__name__}: {exc}") from exc
    return Program(
        fqn=fqn,
        namespace=namespace,
        primitive=primitive,
        source=code,
        dependencies=dependencies,
        dynamic_dependencies=dynamic,
        param_names=params,
        keys=tuple(keys),
        _func=namespace_dict[func.name],
        _filename=filename,
        _fast_type=_FAST.get(primitive),
        uses_context=_uses_context(func, params[1]),
    )


def _uses_context(func: ast.FunctionDef, ctx_name: str) -> bool:
    """Whether the program can see its ``ctx`` argument: it names it anywhere (nested scopes
    included) or reaches its frame's locals (``locals``/``vars``). A program that cannot is
    given one shared :class:`Context` per batch instead of one per row."""
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id in (ctx_name, "locals", "vars"):
            return True
    return False


def _the_function(tree: ast.Module, fqn: str, primitive: Primitive) -> ast.FunctionDef:
    funcs: list[ast.FunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.append(node)
        elif isinstance(node, ast.AsyncFunctionDef):
            raise _fail(fqn, f"{node.name} must be a plain def, not async def", node.lineno)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            continue
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if not isinstance(node.value.value, str):
                raise _fail(fqn, "only a docstring may stand alone at the top level", node.lineno)
        else:
            raise _fail(
                fqn,
                "only one function, imports and docstrings may appear at the top level, "
                f"not {type(node).__name__} (define helpers inside the function)",
                node.lineno,
            )
    if not funcs:
        hint = _expected_annotation(primitive)
        raise _fail(
            fqn, f"builder.code defines no function; expected def handler(row, ctx) -> {hint}"
        )
    if len(funcs) > 1:
        names = ", ".join(f"{f.name} (line {f.lineno})" for f in funcs)
        raise _fail(
            fqn, f"builder.code defines {len(funcs)} top-level functions: {names}; define one"
        )
    func = funcs[0]
    if func.decorator_list:
        raise _fail(fqn, f"{func.name} may not be decorated", func.decorator_list[0].lineno)
    for inner in _own_scope(func):
        if isinstance(inner, ast.Yield | ast.YieldFrom):
            raise _fail(fqn, f"{func.name} must return a value, not yield", inner.lineno)
    return func


def _parameters(func: ast.FunctionDef, fqn: str) -> tuple[str, str]:
    a = func.args
    positional = [p.arg for p in (*a.posonlyargs, *a.args)]
    if len(positional) != 2 or a.vararg or a.kwarg or a.kwonlyargs:
        raise _fail(
            fqn,
            f"{func.name} must take exactly two positional parameters (row, ctx); "
            f"it takes ({ast.unparse(a)})",
            func.lineno,
        )
    if any(not isinstance(d, ast.Constant) for d in a.defaults):
        raise _fail(fqn, f"{func.name}: parameter defaults must be constants", func.lineno)
    return positional[0], positional[1]


def _own_scope(func: ast.FunctionDef) -> Iterable[ast.AST]:
    """Nodes of ``func``'s body, not descending into nested functions, lambdas or classes."""
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))


def _bound_names(tree: ast.Module) -> set[str]:
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
    return bound


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _lint(tree: ast.Module, allowed: set[str]) -> list[tuple[str, int]]:
    problems: list[tuple[str, int]] = []
    bound = _bound_names(tree)

    def blocked(module: str) -> bool:
        top = module.split(".")[0]
        return top in BLOCKED_IMPORTS and top not in allowed

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if blocked(alias.name):
                    problems.append((f"import of {alias.name!r} is not allowed in programs", line))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(("relative imports are not available to programs", line))
            elif node.module and blocked(node.module):
                problems.append((f"import of {node.module!r} is not allowed in programs", line))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in BLOCKED_BUILTINS and node.id not in bound:
                problems.append((f"{node.id}() is not allowed in programs", line))
            elif _is_dunder(node.id) and node.id not in _ALLOWED_DUNDERS:
                problems.append((f"access to {node.id} is not allowed in programs", line))
        elif isinstance(node, ast.Attribute):
            if _is_dunder(node.attr) and node.attr not in _ALLOWED_DUNDERS:
                problems.append((f"access to .{node.attr} is not allowed in programs", line))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _REFLECTION
            and len(node.args) >= 2
            and isinstance(name := getattr(node.args[1], "value", None), str)
            and _is_dunder(name)
            and name not in _ALLOWED_DUNDERS
        ):
            problems.append((f"access to {name} via {node.func.id}() is not allowed", line))
    return problems


def _recursion(tree: ast.Module) -> list[tuple[str, int]]:
    """Cycles in the call graph of the program's named functions (by name, conservatively)."""
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    names = {d.name for d in defs}
    graph: dict[str, list[str]] = {}
    first_call: dict[tuple[str, str], int] = {}
    for d in defs:
        edges = graph.setdefault(d.name, [])
        for node in ast.walk(d):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                callee = node.func.id
                if callee in names:
                    edges.append(callee)
                    first_call.setdefault((d.name, callee), node.lineno)
    cycle = find_cycle(graph)
    if cycle is None:
        return []
    line = first_call[(cycle[-1], cycle[0])]
    path = f"{cycle[0]} calls itself" if len(cycle) == 1 else " -> ".join([*cycle, cycle[0]])
    return [(f"recursion is not allowed: {path}", line)]


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _annotated_primitive(node: ast.expr, *, optional_ok: bool = True) -> Primitive | None:
    """The primitive an annotation names, or None when it names none."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # -> "int"
        try:
            inner = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
        return _annotated_primitive(inner, optional_ok=optional_ok)
    if optional_ok:  # Optional[X], Union[X, None], X | None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if _is_none(node.right):
                return _annotated_primitive(node.left, optional_ok=False)
            if _is_none(node.left):
                return _annotated_primitive(node.right, optional_ok=False)
        if isinstance(node, ast.Subscript):
            base = _dotted(node.value)
            if base in _OPTIONAL_NAMES:
                return _annotated_primitive(node.slice, optional_ok=False)
            if base in _UNION_NAMES and isinstance(node.slice, ast.Tuple):
                rest = [e for e in node.slice.elts if not _is_none(e)]
                if len(rest) == 1 and len(node.slice.elts) == 2:
                    return _annotated_primitive(rest[0], optional_ok=False)
    dotted = _dotted(node)
    if dotted is not None:
        return _SCALAR_ANNOTATIONS.get(dotted)
    if isinstance(node, ast.Subscript) and _dotted(node.value) in _LIST_NAMES:
        element = _annotated_primitive(node.slice, optional_ok=False)
        if element is not None and not element.is_list:
            return element.list_of
    return None


def _annotation(func: ast.FunctionDef, primitive: Primitive) -> list[tuple[str, int]]:
    want = f"annotate it -> {_expected_annotation(primitive)}"
    if func.returns is None:
        text = f"{func.name} has no return annotation; {want} to match spec.primitive"
        return [(f"{text} {primitive.value}", func.lineno)]
    if _annotated_primitive(func.returns) is primitive:
        return []
    shown = ast.unparse(func.returns)
    text = f"{func.name} is annotated -> {shown} but spec.primitive is {primitive.value}"
    return [(f"{text} ({want})", func.returns.lineno)]


def _dependencies(
    tree: ast.Module, ctx_name: str, namespace: str, fqn: str
) -> tuple[tuple[Selector, ...], bool]:
    found: dict[Selector, None] = {}
    dynamic = False
    direct: set[int] = set()  # Attribute nodes that are the callee of a recognised call
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        f = call.func
        if not (isinstance(f, ast.Attribute) and f.attr in _GETTERS):
            continue
        direct.add(id(f))
        if not (isinstance(f.value, ast.Name) and f.value.id == ctx_name):
            dynamic = True  # an alias of ctx (or something else): cannot be sure
            continue
        arg: ast.expr | None = call.args[0] if call.args else None
        if arg is None:
            arg = next((k.value for k in call.keywords if k.arg == "selector"), None)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            try:
                found[parse_selector(arg.value, default_namespace=namespace)] = None
            except SelectorError as exc:
                raise _fail(fqn, f"{ctx_name}.{f.attr}(): {exc}", call.lineno) from None
        else:
            dynamic = True
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _GETTERS and id(node) not in direct:
            dynamic = True  # e.g. ``get = ctx.get_feature``
    return tuple(found), dynamic
