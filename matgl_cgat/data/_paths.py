"""Where the shared multi-fidelity data lives (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MATGL_CGAT_DATA"


def default_data_dir() -> Path | None:
    """The ``mp_gap`` folder: ``$MATGL_CGAT_DATA``, else ``../shared/data/mp_gap`` beside the project.

    Returns None when no candidate holds ``mp_gap.jsonl.gz``.
    """
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(Path.cwd() / ".." / "shared" / "data" / "mp_gap")
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mp_gap")
    for path in candidates:
        if (path / "mp_gap.jsonl.gz").is_file():
            return path.resolve()
    return None
