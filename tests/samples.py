"""Where upstream RaptorML's sample manifests are: ``../shared/compat/raptor-samples`` beside the
project (every developer and CI run has it), or ``$RAPTOR_SAMPLES``."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_samples() -> Path | None:
    env = os.environ.get("RAPTOR_SAMPLES")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "compat" / "raptor-samples" for p in ROOT.parents]
    return next((p for p in candidates if p.is_dir()), None)


SAMPLES = find_samples()
SKIP_REASON = "upstream samples not found beside the project: set RAPTOR_SAMPLES"
