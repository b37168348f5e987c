"""Push random card transactions into a running `raptor up` (standard library only).

python examples/card-transactions/generate.py --url http://127.0.0.1:60001 --rows 500
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

MERCHANTS = ["grocer", "fuel", "books", "cinema", "airline", "pharmacy", "cafe"]


def make_rows(n: int, cards: int, seed: int, now: datetime) -> list[dict[str, object]]:
    """``n`` transactions over the last ``n`` seconds for ``cards`` cards, oldest first."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ts = now - timedelta(seconds=n - i)
        rows.append(
            {
                "card_id": f"c{rng.randrange(cards)}",
                "amount": round(rng.lognormvariate(3, 1), 2),
                "merchant": rng.choice(MERCHANTS),
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
            }
        )
    return rows


def push(url: str, rows: list[dict[str, object]], batch: int) -> int:
    target = url.rstrip("/") + "/api/v1alpha1/datasources/default/transactions/rows"
    sent = 0
    for start in range(0, len(rows), batch):
        body = json.dumps(rows[start : start + batch]).encode()
        req = urllib.request.Request(
            target, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            json.loads(resp.read())
        sent += len(rows[start : start + batch])
    return sent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:60001")
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--cards", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    rows = make_rows(args.rows, args.cards, args.seed, datetime.now(UTC))
    try:
        sent = push(args.url, rows, args.batch)
    except urllib.error.URLError as exc:
        print(f"error: cannot push to {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {sent} transactions for {args.cards} cards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
