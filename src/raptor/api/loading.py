"""Loading manifests from YAML text, files and folders into definitions.

Loading never raises for user errors: every problem becomes a located
:class:`~raptor.errors.ManifestError` in :attr:`LoadResult.errors`, and a bad document does not
stop the others from loading (the folder watcher relies on this). Contract:

* Multi-document YAML (libyaml's ``CSafeLoader`` when available). Empty documents are skipped;
  document indexes count every document of the stream from 0, so they match what an editor
  shows between ``---`` markers.
* A YAML syntax error is reported with its line and column; the other documents of the same
  file still load.
* Documents of the ``k8s.raptor.ml`` group, and documents with no ``apiVersion`` but a Raptor
  ``kind``, are validated by :func:`raptor.api.manifests.resolve` (a wrong version or kind is
  an error). Anything else (``kustomization.yaml``, a ConfigMap) is skipped with a notice.
* The same resource (kind + FQN) defined twice is an error naming both origins; the first wins.
* Folders are walked recursively for ``*.yaml`` / ``*.yml`` in sorted order, skipping hidden
  files and folders (``.git``...); a path given twice is read once. Files given explicitly are
  read whatever their extension.

Reading files is the only effect here; parsing and validation are pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raptor.api.assets import Asset, Origin
from raptor.api.manifests import API_GROUP, KINDS, resolve
from raptor.errors import ManifestError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["LoadResult", "load_paths", "load_text"]

_DOC_START = re.compile(r"^---(?:[ \t]|$)")
_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load produced: definitions, errors, warnings and notices (skipped documents)."""

    assets: tuple[Asset, ...] = ()
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed (warnings and notices do not count)."""
        return not self.errors


@dataclass
class _Collector:
    assets: list[Asset] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def result(self) -> LoadResult:
        seen: dict[tuple[str, str], Origin] = {}
        assets: list[Asset] = []
        for a in self.assets:
            kind = type(a).__name__.removesuffix("Def")
            first = seen.get((kind, a.fqn))
            if first is None:
                seen[(kind, a.fqn)] = a.origin
                assets.append(a)
                continue
            self.errors.append(
                ManifestError(
                    f"{kind} {a.fqn} is defined more than once; first defined at {_where(first)}",
                    file=a.origin.file,
                    index=a.origin.index,
                    resource=f"{kind}/{a.namespace}/{a.name}",
                )
            )
        return LoadResult(
            tuple(assets), tuple(self.errors), tuple(self.warnings), tuple(self.notices)
        )


def _where(origin: Origin) -> str:
    parts = [origin.file or "<text>"]
    if origin.index is not None:
        parts.append(f"document {origin.index}")
    return ", ".join(parts)


def load_text(text: str, file: str | None = None) -> LoadResult:
    """Load every manifest of a YAML text (``file`` names it in errors and origins)."""
    acc = _Collector()
    _load_into(acc, text, file)
    return acc.result()


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Load files, and folders walked recursively for ``*.yaml``/``*.yml``, in sorted order."""
    acc = _Collector()
    read: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = _walk(path)
        elif path.exists():
            files = [path]
        else:
            acc.errors.append(ManifestError("no such file or directory", file=str(path)))
            continue
        for f in files:
            key = f.resolve()
            if key in read:
                continue
            read.add(key)
            try:
                text = f.read_bytes().decode("utf-8-sig")
            except OSError as exc:
                acc.errors.append(ManifestError(f"cannot read: {exc.strerror}", file=str(f)))
                continue
            except UnicodeDecodeError as exc:
                acc.errors.append(ManifestError(f"not UTF-8 text (byte {exc.start})", file=str(f)))
                continue
            _load_into(acc, text, str(f))
    return acc.result()


def _walk(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out.extend(
            Path(dirpath, n) for n in filenames if n.endswith(_SUFFIXES) and not n.startswith(".")
        )
    return sorted(out)


def _load_into(acc: _Collector, text: str, file: str | None) -> None:
    for index, doc in _documents(text, file):
        if isinstance(doc, ManifestError):
            acc.errors.append(doc)
            continue
        if doc is None:
            continue
        origin = Origin(file, index)
        if not isinstance(doc, Mapping):
            acc.errors.append(
                ManifestError(
                    f"a manifest must be a mapping with apiVersion, kind, metadata and spec, "
                    f"got {_kind_of(doc)}",
                    file=file,
                    index=index,
                )
            )
            continue
        if not _is_raptor(doc):
            acc.notices.append(f"{_where(origin)}: skipped {_describe(doc)}: not a Raptor resource")
            continue
        warnings: list[str] = []
        try:
            acc.assets.append(resolve(doc, origin, warnings))
        except ManifestError as exc:
            acc.errors.append(exc)
        acc.warnings.extend(f"{_where(origin)}: {w}" for w in warnings)


def _is_raptor(doc: Mapping[Any, Any]) -> bool:
    api_version = doc.get("apiVersion")
    if api_version is None:
        return doc.get("kind") in KINDS
    return isinstance(api_version, str) and api_version.partition("/")[0] == API_GROUP


def _describe(doc: Mapping[Any, Any]) -> str:
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version is None and kind is None:
        return "a document without apiVersion and kind"
    return f"{kind or 'a document'} of apiVersion {api_version!r}"


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def _documents(text: str, file: str | None) -> Iterator[tuple[int, Any]]:
    """``(index, document)`` pairs; a YAML error is yielded as a :class:`ManifestError`.

    The whole stream is parsed at once; only if that fails is the text split at its ``---``
    lines (document markers end any YAML node, so the split is exact) and each part parsed on
    its own, so that one broken document does not hide the others.
    """
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError:
        pass
    else:
        yield from enumerate(docs)
        return
    lines = _LINE.findall(text)
    starts = [0, *(i for i, ln in enumerate(lines) if i and _DOC_START.match(ln))]
    index = 0
    for first, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        part = "".join(lines[first:end])
        try:
            docs = list(yaml.load_all(part, Loader=_Loader))
        except yaml.YAMLError as exc:
            problem = _yaml_problem(exc, part, first)
            yield index, ManifestError(f"YAML syntax error {problem}", file=file, index=index)
            index += 1
            continue
        for doc in docs:
            yield index, doc
            index += 1


def _yaml_problem(exc: yaml.YAMLError, part: str, first: int) -> str:
    """A one-line description of a YAML error in ``part``, which starts at line ``first``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark, problem = exc.problem_mark, exc.problem or "invalid YAML"
        if exc.context:
            cm = exc.context_mark
            problem += f" ({exc.context}" + (f" at line {first + cm.line + 1})" if cm else ")")
        if mark is not None:
            return f"at line {first + mark.line + 1}, column {mark.column + 1}: {problem}"
        return f": {problem}"
    message = str(exc).partition("\n")[0]
    if isinstance(exc, yaml.reader.ReaderError):
        return f"at line {first + part.count(chr(10), 0, exc.position) + 1}: {message}"
    return f": {message}"
