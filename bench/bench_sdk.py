"""SDK benchmarks: replay and features_and_labels on a million rows. Prints its figures.

    .venv/bin/python bench/bench_sdk.py            # every case, each in a fresh process
    .venv/bin/python bench/bench_sdk.py --rows 200000 --case replay-projection

Cases (each runs in its own subprocess so its peak RSS is its own, inputs included):

* ``replay-projection`` — ``.replay()`` of N events into a windowed feature (sum/count/avg,
  1h window, 1-minute buckets, 10,000 entities); the program is ``return row["amount"]``
  (the column is taken whole, see raptor.sdk.execution).
* ``replay-program`` — the same with a program that must run once per row
  (``return row["amount"] * 1.5``).
* ``training`` — ``features_and_labels()`` on N key-feature rows × 5 features (windowed sum,
  count over 1d, max over 7d, last value, and a label from a second data source of N/10 rows),
  every row returned.

Targets (issue 6; anchor: Feast 0.67 get_historical_features, 1M×1M rows, 16.2 s, 1,993 MiB):
replay <= 5 s; training <= 3.2 s and <= ~1 GiB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np
import pandas as pd

CASES = ("replay-projection", "replay-program", "training")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def payments(n: int, entities: int = 10_000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 30 * 86_400, n))
    return pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, entities, n)).map("c{:05d}".format),
            "ts": pd.Timestamp(T0) + pd.to_timedelta(seconds, unit="s"),
            "amount": rng.gamma(2.0, 20.0, n).round(2),
        }
    )


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, n: int) -> dict[str, Any]:
    from raptor import TrainingContext, aggregation, data_source, feature, freshness, model
    from raptor.sdk.registry import Registry

    frame = payments(n)
    labels = payments(max(n // 10, 1), seed=2).rename(columns={"amount": "label"})
    labels["label"] = (labels["label"] > 60).astype("int64")
    with Registry():

        @data_source(training_data=frame, keys="customer_id", timestamp="ts")
        class Payments(TypedDict):
            customer_id: str
            ts: str
            amount: float

        @data_source(training_data=labels, keys="customer_id", timestamp="ts")
        class Outcomes(TypedDict):
            customer_id: str
            ts: str
            label: int

        if case == "replay-projection":

            @feature(data_source=Payments)
            @aggregation(["sum", "count", "avg"], over="1h", granularity="1m")
            def spend(row, ctx) -> float:
                return row["amount"]

            start = time.perf_counter()
            out = spend.replay(progress=False)
            took = time.perf_counter() - start
            return {"case": case, "rows": len(out), "seconds": took, "peak_rss_mib": peak_mib()}

        if case == "replay-program":

            @feature(data_source=Payments)
            @aggregation(["sum", "count", "avg"], over="1h", granularity="1m")
            def spend15(row, ctx) -> float:
                return row["amount"] * 1.5

            start = time.perf_counter()
            out = spend15.replay(progress=False)
            took = time.perf_counter() - start
            return {"case": case, "rows": len(out), "seconds": took, "peak_rss_mib": peak_mib()}

        @feature(data_source=Payments)
        @aggregation("sum", over="1h", granularity="1m")
        def spend_1h(row, ctx) -> float:
            return row["amount"]

        @feature(data_source=Payments)
        @aggregation("count", over="1d", granularity="10m")
        def payments_1d(row, ctx) -> float:
            return row["amount"]

        @feature(data_source=Payments)
        @aggregation("max", over="7d", granularity="1h")
        def top_7d(row, ctx) -> float:
            return row["amount"]

        @feature(data_source=Payments)
        @freshness(max_age="1h", max_stale="1d")
        def last_amount(row, ctx) -> float:
            return row["amount"]

        @feature(data_source=Outcomes)
        @freshness(max_age="1d", max_stale="7d")
        def label(row, ctx) -> int:
            return row["label"]

        @model(
            keys="customer_id",
            input_features=["spend_1h", "payments_1d", "top_7d", "last_amount"],
            input_labels=["label"],
        )
        @freshness("1m")
        def m(ctx: TrainingContext):  # type: ignore[no-untyped-def]
            return None

        start = time.perf_counter()
        out = m.features_and_labels(progress=False)
        took = time.perf_counter() - start
        assert len(out) == n, (len(out), n)
        filled = {c: float(out[c].notna().mean()) for c in out.columns[2:]}
        return {
            "case": case,
            "rows": len(out),
            "seconds": took,
            "peak_rss_mib": peak_mib(),
            "non_null": filled,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--case", choices=CASES)
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.rows)))
        return
    print(f"raptor SDK benchmarks, {args.rows:,} rows, python {sys.version.split()[0]}")
    for case in CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", case, "--rows", str(args.rows)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        extra = f"  non-null {r['non_null']}" if "non_null" in r else ""
        print(
            f"{case:<18} {r['rows']:>10,} rows  {r['seconds']:6.2f} s  "
            f"peak RSS {r['peak_rss_mib']:7.0f} MiB{extra}"
        )


if __name__ == "__main__":
    main()
