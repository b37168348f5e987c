"""DataSource config → runner settings; positions; dead letter targets; REST templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from raptor.api.assets import ConfigValue, DataSourceDef
from raptor.errors import ManifestError
from raptor.runners.config import Secrets, config_duration, resolve_config, stream_config
from raptor.runners.dead_letters import file_target
from raptor.runners.kafka import kafka_config
from raptor.runners.redis_streams import stream_position
from raptor.runners.rest_builder import RestSourceError, render_template
from raptor.runners.source import compare_positions, position_after


def source(*config: ConfigValue) -> DataSourceDef:
    return DataSourceDef(fqn="default.clicks", namespace="default", name="clicks",
                         kind="streaming", config=config)  # fmt: skip


def test_literal_values_are_stringified() -> None:
    src = source(ConfigValue("kind", "kafka"), ConfigValue("tls_disable", True))
    assert resolve_config(src, Secrets(secrets_dir=None)) == {
        "kind": "kafka",
        "tls_disable": "true",
    }


def test_secret_refs_are_read_from_the_environment_first(tmp_path: Path) -> None:
    (tmp_path / "kafka-creds").mkdir()
    (tmp_path / "kafka-creds" / "password").write_text("from-file\n")
    src = source(ConfigValue("sasl_password", secret_name="kafka-creds", secret_key="password"))
    env = {"RAPTOR_SECRET_KAFKA_CREDS_PASSWORD": "from-env"}
    assert resolve_config(src, Secrets(env, tmp_path))["sasl_password"] == "from-env"
    assert resolve_config(src, Secrets({}, tmp_path))["sasl_password"] == "from-file"


def test_a_missing_secret_names_the_entry_and_where_it_looked(tmp_path: Path) -> None:
    src = source(ConfigValue("sasl_password", secret_name="creds", secret_key="pw"))
    with pytest.raises(ManifestError) as err:
        resolve_config(src, Secrets({}, tmp_path))
    text = str(err.value)
    assert "sasl_password" in text
    assert "RAPTOR_SECRET_CREDS_PW" in text
    assert str(tmp_path / "creds" / "pw") in text


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ((), "config 'kind' is missing"),
        ((ConfigValue("kind", "rabbit"),), "unknown streaming kind 'rabbit'"),
        ((ConfigValue("kind", "kafka"), ConfigValue("batch_size", "x")), "batch_size"),
        ((ConfigValue("kind", "kafka"), ConfigValue("timestamp_fallback", "now")), "broker"),
    ],
)
def test_bad_stream_config_is_a_manifest_error(
    config: tuple[ConfigValue, ...], problem: str
) -> None:
    with pytest.raises(ManifestError, match=problem):
        stream_config(source(*config), Secrets(secrets_dir=None))


def test_stream_config_reads_the_shared_keys() -> None:
    cfg = stream_config(
        source(
            ConfigValue("kind", "redis-streams"),
            ConfigValue("timestamp_fallback", "broker"),
            ConfigValue("batch_size", 50),
            ConfigValue("dead_letter", "file:x.ndjson"),
        ),
        Secrets(secrets_dir=None),
    )
    assert (cfg.broker, cfg.broker_time_fallback, cfg.batch_size) == ("redis", True, 50)
    assert cfg.dead_letter == "file:x.ndjson"


def test_durations_accept_go_syntax_and_seconds() -> None:
    assert config_duration({"a": "1500ms"}, "a", 1.0) == 1.5
    assert config_duration({"a": "2"}, "a", 1.0) == 2.0
    assert config_duration({}, "a", 7.0) == 7.0
    with pytest.raises(ManifestError, match="'a'"):
        config_duration({"a": "soon"}, "a", 1.0)


def test_positions_compare_as_numbers() -> None:
    assert compare_positions("9", "10") == -1
    assert position_after("10", "9")
    assert not position_after("9", "9")
    assert position_after("0", None)


def test_stream_ids_become_ordered_positions() -> None:
    a, t = stream_position(b"1700000000000-9")
    b, _ = stream_position("1700000000000-10")
    c, _ = stream_position("1700000000001-0")
    assert t == 1_700_000_000_000_000
    assert position_after(b, a)
    assert position_after(c, b)


def test_dead_letter_file_targets() -> None:
    assert file_target("file:/tmp/a") == Path("/tmp/a")
    assert file_target("dl.ndjson") == Path("dl.ndjson")
    assert file_target("events.dead") is None
    assert file_target(None) is None


def test_kafka_config_maps_security_keys() -> None:
    conf = kafka_config(
        {"brokers": "b:9092", "sasl_username": "u", "sasl_password": "p", "tls_disable": "true",
         "librdkafka.fetch.min.bytes": "10", "initial_offset": "newest"},
        "g",
        "pod-0",
    )  # fmt: skip
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == "PLAIN"
    assert conf["group.instance.id"] == "pod-0"
    assert conf["auto.offset.reset"] == "latest"
    assert conf["fetch.min.bytes"] == "10"
    assert conf["enable.auto.commit"] is False
    with pytest.raises(ManifestError, match="initial_offset"):
        kafka_config({"brokers": "b", "initial_offset": "middle"}, "g", None)
    with pytest.raises(ManifestError, match="brokers"):
        kafka_config({}, "g", None)


def test_rest_templates_fill_keys() -> None:
    keys = {"user": "a/b", "region": "eu"}
    order = ("user", "region")
    assert render_template("/u/{key:user}", keys, order, in_url=True) == "/u/a%2Fb"
    assert render_template('{"u": "{key:user}"}', keys, order, in_url=False) == '{"u": "a/b"}'
    assert render_template("/x/{keys}", keys, order, in_url=True) == "/x/a%2Fb,eu"
    with pytest.raises(RestSourceError, match="key:nope"):
        render_template("/{key:nope}", keys, order, in_url=True)
