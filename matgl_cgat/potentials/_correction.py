"""A per-element linear correction of a potential's formation enthalpy: the cheapest fix.

A universal potential's error on formation enthalpies is largely per element (its elemental
references, the fitted-correction schemes of the Materials Project): ``target - potential`` is
fitted by least squares as a linear function of the element fractions, on training labels only, and
added back. Elements absent from the training labels get no correction (and are listed in
``unseen``), which a report must say: the correction cannot help a crystal made of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def _fractions(structures: Sequence, elements: Sequence[str]) -> np.ndarray:
    index = {el: i for i, el in enumerate(elements)}
    x = np.zeros((len(structures), len(elements)))
    for row, s in enumerate(structures):
        comp = s.composition.fractional_composition
        for el, frac in comp.items():
            if el.symbol in index:
                x[row, index[el.symbol]] = frac
    return x


@dataclass
class ElementCorrection:
    """``target ≈ potential + sum_el x_el * c_el`` with ``x_el`` the element fractions.

    Attributes:
        coefficients: element -> correction per unit fraction, eV/atom.
    """

    coefficients: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, structures: Sequence, potential_values: Sequence[float], targets: Sequence[float],
            ridge: float = 1e-8) -> ElementCorrection:
        """Least squares on the training crystals (``ridge`` only keeps a rank-deficient system solvable)."""
        potential_values = np.asarray(potential_values, dtype=float)
        targets = np.asarray(targets, dtype=float)
        if not (len(structures) == len(potential_values) == len(targets)):
            raise ValueError("structures, potential values and targets differ in length")
        if not (np.isfinite(potential_values).all() and np.isfinite(targets).all()):
            raise ValueError("non-finite potential values or targets: drop the skipped structures first")
        elements = sorted({el.symbol for s in structures for el in s.composition.elements})
        x = _fractions(structures, elements)
        residual = targets - potential_values
        coef = np.linalg.solve(x.T @ x + ridge * np.eye(len(elements)), x.T @ residual)
        return cls(dict(zip(elements, map(float, coef))))

    def shift(self, structures: Sequence) -> np.ndarray:
        """The correction for each structure, eV/atom."""
        elements = sorted(self.coefficients)
        coef = np.array([self.coefficients[el] for el in elements])
        return _fractions(structures, elements) @ coef if elements else np.zeros(len(structures))

    def apply(self, structures: Sequence, potential_values: Sequence[float]) -> np.ndarray:
        """Corrected values: the potential's plus :meth:`shift`."""
        return np.asarray(potential_values, dtype=float) + self.shift(structures)

    def unseen(self, structure) -> list[str]:
        """Elements of ``structure`` the correction knows nothing about."""
        return sorted(el.symbol for el in structure.composition.elements if el.symbol not in self.coefficients)

    def as_dict(self) -> dict:
        return {"coefficients": dict(self.coefficients)}

    @classmethod
    def from_dict(cls, data: dict) -> ElementCorrection:
        return cls({str(k): float(v) for k, v in data["coefficients"].items()})
