"""features_and_labels: backward-only, point-in-time, every key-feature row kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

import numpy as np
import pandas as pd
import pytest

from raptor import TrainingContext, aggregation, data_source, feature, freshness, model
from raptor.sdk.registry import Registry

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def reg() -> Registry:
    with Registry() as r:
        yield r


def _clicks_and_labels(clicks: list[tuple[str, float]], outcomes: list[tuple[str, float, int]]):  # type: ignore[no-untyped-def]
    @data_source(
        training_data=pd.DataFrame(
            {
                "user": [u for u, _ in clicks],
                "ts": pd.to_datetime([at(t) for _, t in clicks], utc=True),
            }
        ),
        keys="user",
        timestamp="ts",
    )
    class Clicks(TypedDict):
        user: str
        ts: str

    @data_source(
        training_data=pd.DataFrame(
            {
                "user": [u for u, _, _ in outcomes],
                "ts": pd.to_datetime([at(t) for _, t, _ in outcomes], utc=True),
                "bought": [b for _, _, b in outcomes],
            }
        ),
        keys="user",
        timestamp="ts",
    )
    class Outcomes(TypedDict):
        user: str
        ts: str
        bought: int

    @feature(data_source=Clicks)
    @aggregation("count", over="1h", granularity="1m")
    def clicks(row, ctx) -> int:
        return 1

    @feature(data_source=Outcomes)
    @freshness(max_age="1h", max_stale="1d")
    def bought(row, ctx) -> int:
        return row["bought"]

    @model(keys="user", input_features=["clicks"], input_labels=["bought"])
    @freshness("1m")
    def buyer(ctx: TrainingContext):  # type: ignore[no-untyped-def]
        from sklearn.dummy import DummyClassifier

        df = ctx.features_and_labels()
        return DummyClassifier().fit(df[ctx.input_features], df[ctx.input_labels[0]].fillna(0))

    return buyer


def test_a_label_from_the_future_never_leaks(reg: Registry) -> None:
    # The outcome 1 is known one second AFTER the click: `nearest` would join it (1s away,
    # versus the old 0 an hour before). Backward-only takes the 0 known at click time.
    buyer = _clicks_and_labels([("u", 3600)], [("u", 0, 0), ("u", 3601, 1)])
    df = buyer.features_and_labels()
    assert df["bought"].tolist() == [0]
    # and with no earlier label at all the row is kept with a null label
    reg.clear()
    buyer = _clicks_and_labels([("u", 3600), ("v", 10)], [("u", 3601, 1)])
    df = buyer.features_and_labels()
    assert len(df) == 2
    assert df["bought"].isna().all()


def test_labels_older_than_staleness_are_null_but_rows_stay(reg: Registry) -> None:
    buyer = _clicks_and_labels([("u", 0), ("u", 90_000)], [("u", -10, 1)])
    df = buyer.features_and_labels()
    assert df["bought"].tolist()[0] == 1
    assert pd.isna(df["bought"].tolist()[1])  # 1 day + stale
    assert df["clicks"].tolist() == [1, 1]  # the first click left the window


def test_columns_order_since_and_until(reg: Registry) -> None:
    buyer = _clicks_and_labels([("u", t) for t in (0, 60, 120, 180)], [("u", 0, 1)])
    df = buyer.features_and_labels(since=at(60), until=at(180))
    assert list(df.columns) == ["timestamp", "user", "clicks", "bought"]
    assert df["timestamp"].tolist() == [pd.Timestamp(at(60)), pd.Timestamp(at(120))]
    assert df["clicks"].tolist() == [2, 3]
    assert buyer.train() is buyer.trained


def test_multi_key_features_join_on_all_keys(reg: Registry) -> None:
    tx = pd.DataFrame(
        {
            "user": ["u", "u", "v"],
            "shop": ["s1", "s2", "s1"],
            "ts": pd.to_datetime([at(0), at(10), at(20)], utc=True),
            "amount": [1.0, 2.0, 4.0],
        }
    )

    @data_source(training_data=tx, keys=["user", "shop"], timestamp="ts")
    class Tx(TypedDict):
        user: str
        shop: str
        ts: str
        amount: float

    @feature(keys="user", data_source=Tx)
    @aggregation("sum", "1h", "1m")
    def per_user(row, ctx) -> float:
        return row["amount"]

    @feature(keys=["user", "shop"], data_source=Tx)
    @aggregation("sum", "1h", "1m")
    def per_pair(row, ctx) -> float:
        return row["amount"]

    @model(keys=["user", "shop"], input_features=["per_user", "per_pair"], input_labels=[])
    @freshness("1m")
    def m(ctx: TrainingContext):  # type: ignore[no-untyped-def]
        return ctx.features_and_labels()

    df = m.features_and_labels()
    assert df[["user", "shop"]].values.tolist() == [["u", "s1"], ["u", "s2"], ["v", "s1"]]
    assert df["per_user"].tolist() == [1.0, 3.0, 4.0]
    assert df["per_pair"].tolist() == [1.0, 2.0, 4.0]


def test_many_rows_are_all_kept(reg: Registry) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    clicks = list(
        zip(
            rng.choice(["a", "b", "c", "d"], n).tolist(),
            rng.integers(0, 86_400, n).tolist(),
            strict=False,
        )
    )
    outcomes = list(
        zip(
            rng.choice(["a", "b"], 50).tolist(),
            rng.integers(0, 86_400, 50).tolist(),
            [1] * 50,
            strict=False,
        )
    )
    buyer = _clicks_and_labels(clicks, outcomes)
    df = buyer.features_and_labels()
    assert len(df) == n
    assert df["timestamp"].is_monotonic_increasing
    assert df.loc[df["user"].isin(["c", "d"]), "bought"].isna().all()
