"""Hull distances from formation energies (``matgl_cgat.stability``) on systems small enough to do by hand."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition

from matgl_cgat.stability import ReferenceHull


@pytest.fixture
def hull() -> ReferenceHull:
    # Li-O: Li2O at -2.0 eV/atom; Na-Cl: NaCl at -2.1; an unstable Li2O2 above the Li2O-O tie line.
    return ReferenceHull(["Li2O", "NaCl", "Li2O2"], [-2.0, -2.1, -1.0])


def test_distance_to_a_tie_line_by_hand(hull):
    # Li3O lies between Li (0, x_O=0) and Li2O (-2.0, x_O=1/3): at x_O=1/4 the hull is -1.5.
    assert hull.e_above_hull("Li3O", -1.3) == pytest.approx(0.2)
    assert hull.e_above_hull("Li3O", -1.6) == pytest.approx(-0.1)
    # Li2O2 (x_O=1/2) against Li2O (-2.0 at 1/3) and O (0 at 1): hull -1.5 there.
    assert hull.e_above_hull("Li2O2", -1.0) == pytest.approx(0.5)
    assert hull.e_above_hull(Composition("Li2O"), -2.0) == pytest.approx(0.0, abs=1e-9)


def test_systems_do_not_mix_and_elements_sit_at_zero(hull):
    assert hull.e_above_hull("Na", 0.05) == pytest.approx(0.05)
    # A ternary uses every binary of its subsystems: Li2O and NaCl, nothing else.
    pd = hull.diagram(["Li", "O", "Na", "Cl"])
    assert {e.composition.reduced_formula for e in pd.stable_entries} == {"Li", "O2", "Na", "Cl2", "Li2O", "NaCl"}
    d = hull.distances(["Li3O", "Li3O"], [-1.3, -1.6])
    assert np.allclose(d, [0.2, 0.0])
    assert np.allclose(hull.distances(["Li3O"], [-1.6], allow_negative=True), [-0.1])


def test_bad_references_are_refused():
    with pytest.raises(ValueError, match="not finite"):
        ReferenceHull(["NaCl"], [float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        ReferenceHull([], [])
