"""What feature programs depend on, checked without running them: the packages a program
requires (:func:`check_packages`, presence only) and cycles in a dependency graph
(:func:`find_cycle`: features reading features, in the catalog and the SDK registry, and the call
graph of one program's own functions, for the recursion check of :mod:`raptor.engine.programs`,
which re-exports both). Pure but for :func:`check_packages` looking at what is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["check_packages", "find_cycle"]

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"(?:(?:[<>=!~]=?|===)\s*[^,;\s]+(?:\s*,\s*(?:[<>=!~]=?|===)\s*[^,;\s]+)*)?\s*(?:;.*)?$"
)


def check_packages(packages: Sequence[str]) -> list[str]:
    """The requirements of ``packages`` (pip names, optional extras and version specifiers,
    e.g. ``numpy>=1.2``) whose distribution is not installed here, as given, in order.

    Presence only: versions are not compared (a cluster's runtime image pins them). A name
    that is not a distribution but an importable module (``json``) counts as present; a
    malformed requirement is reported as missing. Nothing is imported.
    """
    missing: list[str] = []
    for requirement in packages:
        m = _REQUIREMENT.match(requirement) if isinstance(requirement, str) else None
        if m is None or not _installed(m.group("name")):
            missing.append(requirement)
    return missing


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    module = name.replace("-", "_")
    if "." in module:  # find_spec would import the parent package
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> successors) as nodes in order, or None. Pure.

    Iterative depth-first search over nodes and successors in sorted order, so the answer
    does not depend on mapping order; the cycle is rotated to start at its smallest node.
    Successors that are not keys of ``graph`` are leaves. A self-loop is ``[node]``.

    >>> find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})
    ['a', 'b', 'c']
    >>> find_cycle({"a": ["b"], "b": []}) is None
    True
    """
    succ = {node: sorted(set(edges)) for node, edges in graph.items()}
    done: set[str] = set()
    for root in sorted(succ):
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root: 0}
        stack = [iter(succ[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                node = path.pop()
                done.add(node)
                del on_path[node]
                continue
            if nxt in on_path:
                cycle = path[on_path[nxt] :]
                start = cycle.index(min(cycle))
                return cycle[start:] + cycle[:start]
            if nxt in done or nxt not in succ:
                continue
            on_path[nxt] = len(path)
            path.append(nxt)
            stack.append(iter(succ[nxt]))
    return None
