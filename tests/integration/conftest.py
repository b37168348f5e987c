"""Broker fixtures for the ingestion tests (helpers in ``brokers.py``): one private server per
session each, started on first use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from brokers import KafkaMock, NatsServer, PubSubEmulator, pubsub_emulator_binary


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def kafka_mock() -> Iterator[KafkaMock]:
    cluster = KafkaMock()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    if pubsub_emulator_binary() is None:
        pytest.skip(
            "the Pub/Sub emulator (google-cloud-cli, with Java) is not installed on this "
            "machine; the Pub/Sub source is tested where it is"
        )
    emulator = PubSubEmulator().start()
    try:
        yield emulator
    finally:
        emulator.close()
