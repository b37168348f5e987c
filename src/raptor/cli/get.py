"""``raptor get SELECTOR key=value...``: read a value from a running Raptor over REST.

Uses only the standard library (``urllib``) so the client works without the server extras.
Prints the value, its timestamp and whether it is fresh; ``--json`` prints the raw answer.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

__all__ = ["run_get"]


def run_get(selector: str, pairs: Sequence[str], *, url: str, raw: bool = False) -> int:
    params: list[tuple[str, str]] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"error: expected KEY=VALUE, got {pair!r}", file=sys.stderr)
            return 2
        params.append((f"keys.{key}", value))
    target = (
        url.rstrip("/")
        + "/api/v1alpha1/features/"
        + urllib.parse.quote(selector, safe="+@[]._-")
        + ("?" + urllib.parse.urlencode(params) if params else "")
    )
    try:
        with urllib.request.urlopen(target, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            print(f"error: {err['code']}: {err['message']}", file=sys.stderr)
        except (ValueError, KeyError, TypeError):
            print(f"error: HTTP {exc.code} from {target}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach Raptor at {url}: {exc}", file=sys.stderr)
        return 3
    if raw:
        print(json.dumps(body, indent=2))
        return 0
    value = body.get("value")
    print(f"{body.get('selector', selector)} {json.dumps(body.get('keys', {}))}")
    print(f"  value:     {json.dumps(value)}")
    print(f"  timestamp: {body.get('timestamp')}")
    print(f"  fresh:     {str(body.get('fresh')).lower()}")
    return 0
