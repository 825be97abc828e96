"""CGAT models."""

from __future__ import annotations

from ._answers import CrystalAnswers
from ._cgat import CGAT, PRESETS

__all__ = ["CGAT", "PRESETS", "CrystalAnswers"]
