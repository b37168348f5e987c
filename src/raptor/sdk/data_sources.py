"""Data sources declared with ``@data_source`` on a ``TypedDict`` class.

The decorator returns **the class itself** (it is a type that programs annotate rows with), with
one attribute added: ``raptor``, the :class:`DataSource` record, which holds the definition, the
training data and the notebook helpers (``.manifest()``, ``.export()``, ``.frame()``). Features
accept the class, the record or the data source's name as ``data_source=``.

Training data may be a DataFrame, a path to a CSV/Parquet/JSON-lines file, or a callable that
returns a DataFrame; paths and callables are read on first use, so declaring a data source does
no I/O (SPEC 6: no I/O at import time).
"""

from __future__ import annotations

import datetime as _dt
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raptor.api.assets import DataSourceDef

if TYPE_CHECKING:
    import pandas as pd

    from raptor.sdk.registry import Registry

__all__ = ["DataSource", "json_schema"]

TrainingData = Any
"""A DataFrame, a path (str or Path) to CSV/Parquet/JSON-lines, a callable, or None."""


class DataSource:
    """What ``@data_source`` recorded. ``cls.raptor`` on the decorated class."""

    def __init__(
        self,
        definition: DataSourceDef,
        cls: type,
        training_data: TrainingData,
        fields: tuple[str, ...],
        where: str,
        registry: Registry,
    ) -> None:
        self.definition = definition
        self.cls = cls
        self.fields = fields
        self.where = where
        self.registry = registry
        self._training_data = training_data
        self._frame: pd.DataFrame | None = None

    @property
    def fqn(self) -> str:
        return self.definition.fqn

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def namespace(self) -> str:
        return self.definition.namespace

    @property
    def keys(self) -> tuple[str, ...]:
        return self.definition.key_fields

    @property
    def timestamp(self) -> str | None:
        return self.definition.timestamp_field

    @property
    def training_data(self) -> TrainingData:
        """What replay reads; assign a new DataFrame (or path) to replay on other data."""
        return self._training_data

    @training_data.setter
    def training_data(self, data: TrainingData) -> None:
        self._training_data = data
        self._frame = None

    @property
    def has_training_data(self) -> bool:
        return self._training_data is not None

    def columns(self) -> tuple[str, ...] | None:
        """The training frame's columns if it is already in memory (no I/O), else None."""
        data = self._frame if self._frame is not None else self._training_data
        cols = getattr(data, "columns", None)
        return None if cols is None else tuple(str(c) for c in cols)

    def frame(self) -> pd.DataFrame:
        """The training data as a DataFrame (read on first use)."""
        if self._frame is not None:
            return self._frame
        import pandas as pd

        data = self._training_data
        if data is None:
            raise ValueError(
                f"data source {self.fqn} has no training data; pass training_data= to "
                "@data_source to replay features on it"
            )
        if callable(data) and not isinstance(data, pd.DataFrame):
            data = data()
        if isinstance(data, str | Path):
            path = Path(data)
            suffix = path.suffix.lower()
            if suffix == ".parquet":
                data = pd.read_parquet(path)
            elif suffix in (".json", ".jsonl", ".ndjson"):
                data = pd.read_json(path, lines=suffix != ".json")
            else:
                data = pd.read_csv(path)
        if not isinstance(data, pd.DataFrame):
            raise TypeError(
                f"data source {self.fqn}: training_data must be a DataFrame, a file path or a "
                f"callable returning a DataFrame, got {type(data).__name__}"
            )
        self._frame = data
        return data

    def manifest(self) -> str:
        """The DataSource manifest as YAML."""
        from raptor.sdk.export import to_yaml

        return to_yaml([self.definition])

    def export(self, path: str | Path = "out") -> Path:
        """Write this data source's manifest (plus a kustomization and Makefile) to ``path``."""
        from raptor.sdk.export import export_assets

        return export_assets(self.registry, [self.definition], Path(path))

    def __repr__(self) -> str:
        d = self.definition
        keys = ", ".join(d.key_fields) or "-"
        rows = ""
        if self._frame is not None or hasattr(self._training_data, "shape"):
            frame = self._frame if self._frame is not None else self._training_data
            rows = f", {len(frame):,} training rows"
        return (
            f"<DataSource {d.fqn} kind={d.kind} keys=({keys}) "
            f"timestamp={d.timestamp_field or '-'}{rows}>"
        )


_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    _dt.datetime: {"type": "string", "format": "date-time"},
    _dt.date: {"type": "string", "format": "date"},
}


def _schema_of(tp: Any, depth: int = 0) -> dict[str, Any]:
    if tp in _JSON_TYPES:
        return dict(_JSON_TYPES[tp])
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple) and args:
        return {"type": "array", "items": _schema_of(args[0], depth + 1)}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _schema_of(rest[0], depth + 1)
    if typing.is_typeddict(tp) and depth < 8:
        return json_schema(tp, depth + 1) or {"type": "object"}
    return {}


def json_schema(cls: type, depth: int = 0) -> dict[str, Any] | None:
    """A JSON schema of a TypedDict's fields (best effort; None when hints cannot be read)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # forward references the module cannot resolve: no schema, no error
        return None
    required = sorted(getattr(cls, "__required_keys__", ()))
    out: dict[str, Any] = {
        "type": "object",
        "properties": {name: _schema_of(tp, depth) for name, tp in hints.items()},
    }
    if required:
        out["required"] = required
    return out


def typed_dict_fields(cls: type) -> tuple[str, ...]:
    """The field names of a TypedDict class, in declaration order."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name in getattr(klass, "__annotations__", {}):
            if name not in names:
                names.append(name)
    return tuple(names)


Loader = Callable[[], "pd.DataFrame"]
