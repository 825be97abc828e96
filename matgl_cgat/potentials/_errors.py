"""The one error a potential's energies raise for a structure it cannot handle."""

from __future__ import annotations


class PotentialError(ValueError):
    """A structure a universal potential cannot give an energy for (an element outside its table, a
    relaxation that diverged or did not converge, a non-finite energy); the message names the
    structure, the potential and the problem."""
