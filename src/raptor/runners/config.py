"""DataSource ``config`` entries → the typed settings of a stream runner. Pure apart from
reading secrets through the :class:`Secrets` it is given.

A DataSource's ``spec.config`` is a list of ``{name, value | secretKeyRef{name, key}}``
(SPEC 3). :func:`resolve_config` turns it into a plain ``dict[str, str]``: literal values are
stringified (YAML ``true`` → ``"true"``), secret references are read through :class:`Secrets`:

1. the environment variable ``RAPTOR_SECRET_<NAME>_<KEY>`` (upper case, every character that
   is not a letter or digit replaced by ``_``) — how a Deployment maps a Secret with
   ``valueFrom.secretKeyRef``;
2. the file ``<secrets_dir>/<name>/<key>`` (default ``/var/run/secrets/raptor``) — how a
   Secret mounted as a volume appears; a trailing newline is dropped.

A missing secret is a :class:`~raptor.errors.ManifestError` naming the entry and where it was
looked for. :func:`stream_config` then reads the keys every broker shares (SPEC 8.1):
``kind``, ``dead_letter``, ``timestamp_fallback`` (``broker`` allows the broker's time when the
row has no ``timestampField``), ``batch_size``, ``checkpoint_epoch``. Broker-specific keys are
read by each adapter from :attr:`StreamConfig.options`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raptor.api.assets import DataSourceDef
from raptor.api.timeutil import parse_duration
from raptor.errors import ManifestError

__all__ = [
    "BROKER_KINDS",
    "Secrets",
    "StreamConfig",
    "config_duration",
    "config_int",
    "resolve_config",
    "stream_config",
]

BROKER_KINDS = {
    "kafka": "kafka",
    "redis": "redis",
    "redis-streams": "redis",
    "redis_streams": "redis",
    "nats": "nats",
    "jetstream": "nats",
    "nats-jetstream": "nats",
    "pubsub": "pubsub",
    "google-pubsub": "pubsub",
    "gcp-pubsub": "pubsub",
}
"""Accepted ``config.kind`` values → the adapter that reads them."""

_NON_WORD = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class Secrets:
    """Where ``secretKeyRef`` values come from: an environment mapping and a mounted folder."""

    env: Mapping[str, str] = field(default_factory=dict)
    secrets_dir: Path | None = Path("/var/run/secrets/raptor")

    @staticmethod
    def env_name(name: str, key: str) -> str:
        """``RAPTOR_SECRET_<NAME>_<KEY>`` for a secret reference.

        >>> Secrets.env_name("kafka-creds", "password")
        'RAPTOR_SECRET_KAFKA_CREDS_PASSWORD'
        """
        return f"RAPTOR_SECRET_{_NON_WORD.sub('_', name).upper()}_{_NON_WORD.sub('_', key).upper()}"

    def read(self, name: str, key: str) -> str | None:
        value = self.env.get(self.env_name(name, key))
        if value is not None:
            return value
        if self.secrets_dir is not None:
            path = self.secrets_dir / name / key
            try:
                return path.read_text().removesuffix("\n")
            except OSError:
                return None
        return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def resolve_config(source: DataSourceDef, secrets: Secrets) -> dict[str, str]:
    """Every config entry of ``source`` as text, secret references read (see the module doc)."""
    out: dict[str, str] = {}
    for i, c in enumerate(source.config):
        if c.secret_name is not None:
            value = secrets.read(c.secret_name, c.secret_key or "")
            if value is None:
                where = [
                    f"environment variable {Secrets.env_name(c.secret_name, c.secret_key or '')}"
                ]
                if secrets.secrets_dir is not None:
                    where.append(
                        f"file {secrets.secrets_dir / c.secret_name / (c.secret_key or '')}"
                    )
                raise ManifestError(
                    f"DataSource {source.namespace}/{source.name}: config {c.name!r} refers to "
                    f"secret {c.secret_name}/{c.secret_key}, which was found neither in "
                    + " nor in ".join(where),
                    field=f"spec.config[{i}].secretKeyRef",
                )
            out[c.name] = value
        else:
            out[c.name] = _text(c.value)
    return out


def config_int(options: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    """An integer option (``ManifestError`` naming it when malformed or below ``minimum``)."""
    text = options.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ManifestError(f"config {name!r} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ManifestError(f"config {name!r} must be at least {minimum}, got {value}")
    return value


def config_duration(options: Mapping[str, str], name: str, default: float) -> float:
    """A duration option in seconds: a Go duration (``5s``, ``500ms``) or plain seconds."""
    text = options.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text) / 1_000_000
    except ValueError as exc:
        raise ManifestError(f"config {name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """The broker-independent part of a streaming DataSource's config."""

    broker: str
    options: Mapping[str, str]
    dead_letter: str | None = None
    broker_time_fallback: bool = False
    batch_size: int = 1000
    checkpoint_epoch: str = ""


def stream_config(source: DataSourceDef, secrets: Secrets) -> StreamConfig:
    """Read and check the shared keys of a ``streaming`` DataSource (``ManifestError`` if bad)."""
    options = resolve_config(source, secrets)
    where = f"DataSource {source.namespace}/{source.name}"
    kind = options.get("kind", "").strip().lower()
    if not kind:
        raise ManifestError(
            f"{where}: config 'kind' is missing; expected one of kafka, redis, nats, pubsub",
            field="spec.config",
        )
    broker = BROKER_KINDS.get(kind)
    if broker is None:
        raise ManifestError(
            f"{where}: unknown streaming kind {kind!r}; expected one of kafka, redis, nats, pubsub",
            field="spec.config",
        )
    fallback = options.get("timestamp_fallback", "").strip().lower()
    if fallback not in ("", "none", "broker"):
        raise ManifestError(
            f"{where}: config 'timestamp_fallback' must be 'broker' or 'none', got {fallback!r}",
            field="spec.config",
        )
    try:
        batch = config_int(options, "batch_size", 1000)
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}", field="spec.config") from None
    return StreamConfig(
        broker=broker,
        options=options,
        dead_letter=options.get("dead_letter", "").strip() or None,
        broker_time_fallback=fallback == "broker",
        batch_size=batch,
        checkpoint_epoch=options.get("checkpoint_epoch", "").strip(),
    )
