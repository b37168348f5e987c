# %% [markdown]
# # Churn: from a notebook to production manifests
#
# A notebook-style script (`# %%` cells run in Jupyter/VS Code): declare data sources and
# features on plain Python functions, replay them on historical data, train a model on a
# point-in-time-correct training set, and export manifests that `raptor up` (or `kubectl
# apply -k`) runs unchanged. Run it: `python examples/notebook-churn/churn.py out/`, then
# `raptor validate out/` and `raptor up out/`. `raptor export churn.py -o out/` does the same
# from the command line.
"""Notebook-style example: payments and subscriptions → features → churn model → manifests."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from raptor import (
    Context,
    PushConfig,
    TrainingContext,
    aggregation,
    data_source,
    feature,
    freshness,
    keep_previous,
    model,
)

END = datetime(2024, 6, 3, tzinfo=UTC)


# %% Historical data (synthetic and deterministic; a real notebook reads a warehouse table)
def make_payments(end: datetime = END, customers: int = 60, days: int = 3) -> pd.DataFrame:
    """Card payments: customers who will churn pay less, and less often, near the end."""
    rng = np.random.default_rng(7)
    rows = []
    start = end - timedelta(days=days)
    for c in range(customers):
        churner = c % 4 == 0
        n = int(rng.integers(20, 60)) // (3 if churner else 1)
        offsets = np.sort(rng.uniform(0, days * 86_400 - 1, n))
        for off in offsets:
            rows.append(
                {
                    "customer_id": f"c{c:03d}",
                    "ts": start + timedelta(seconds=float(off)),
                    "amount": round(float(rng.gamma(2.0, 8.0 if churner else 20.0)), 2),
                    "merchant": str(rng.choice(["grocer", "cinema", "fuel", "books", "cafe"])),
                }
            )
    df = pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def make_subscriptions(end: datetime = END, customers: int = 60, days: int = 3) -> pd.DataFrame:
    """Subscription status changes: every customer starts active; churners cancel late."""
    rng = np.random.default_rng(11)
    start = end - timedelta(days=days)
    rows = []
    for c in range(customers):
        rows.append({"customer_id": f"c{c:03d}", "ts": start, "status": "active"})
        if c % 4 == 0:
            at = start + timedelta(seconds=float(rng.uniform(1.5, 2.9) * 86_400))
            rows.append({"customer_id": f"c{c:03d}", "ts": at, "status": "cancelled"})
    df = pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


# %% Data sources: TypedDicts of the rows production receives (pushed over REST here)
@data_source(
    training_data=make_payments,
    keys="customer_id",
    timestamp="ts",
    production_config=PushConfig(),
)
class Payments(TypedDict):
    """Card payments, pushed to Raptor as they happen."""

    customer_id: str
    ts: str
    amount: float
    merchant: str


@data_source(training_data=make_subscriptions, keys="customer_id", timestamp="ts")
class Subscriptions(TypedDict):
    """Subscription status changes."""

    customer_id: str
    ts: str
    status: str


# %% Features: plain functions, exported as the production program
@feature(keys="customer_id", data_source=Payments)
@aggregation(function=["sum", "count", "avg", "max"], over="1d", granularity="1h")
def spend(row: Payments, ctx: Context) -> float:
    """Card spend over the last day, in hourly buckets."""
    return row["amount"]


@feature(keys="customer_id", data_source=Payments)
@freshness(max_age="1h", max_stale="2d")
@keep_previous(versions=2, over="1d")
def last_merchant(row: Payments, ctx: Context) -> str:
    """Where the customer paid last (and the two times before: @-1, @-2)."""
    return row["merchant"]


@feature(keys="customer_id")
@freshness(max_age="0s", max_stale="1h")
def ticket_ratio(row: dict, ctx: Context) -> float:
    """Today's average ticket relative to the day's biggest payment (derived on request)."""
    avg, _ = ctx.get_feature("spend+avg")
    top, _ = ctx.get_feature("spend+max")
    if avg is None or not top:
        return 0.0
    return avg / top


@feature(keys="customer_id", data_source=Subscriptions)
@freshness(max_age="1h", max_stale="7d")
def churned(row: Subscriptions, ctx: Context) -> int:
    """The label: 1 once the subscription is cancelled."""
    return 1 if row["status"] == "cancelled" else 0


# %% Model: trained on what production would have served at each payment
@model(
    keys="customer_id",
    input_features=["spend+sum", "spend+count", "spend+avg", "ticket_ratio"],
    input_labels=["churned"],
    model_framework="sklearn",
)
@freshness(max_age="1m", max_stale="1h")
def churn_model(ctx: TrainingContext):  # type: ignore[no-untyped-def]
    """Logistic regression on the last day's spending pattern."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = ctx.features_and_labels()
    x = df[ctx.input_features].astype(float).fillna(0.0)
    y = df[ctx.input_labels[0]].fillna(0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


# %% Run the notebook
def main(out: str = "out") -> Path:
    print(spend)
    print(spend.replay().tail())
    print(last_merchant.replay().tail())
    training = churn_model.features_and_labels()
    print(f"training frame: {len(training)} rows, {training['churned'].mean():.0%} churned")
    churn_model.train()
    folder = churn_model.export(out)
    last_merchant.export(out)  # not a model input, but served too: exports accumulate
    print(f"exported to {folder}: try `raptor validate {folder}` and `raptor up {folder}`")
    return folder


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out")
