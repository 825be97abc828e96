"""Static energies or relaxations with ASE's own optimisers and cell filters.

A formation enthalpy from a universal potential is only as good as the geometry it is evaluated
on. On a DFT-relaxed cell a static energy is usually enough (issue #34 measured no gain from
relaxing the shared crystals), but elemental references built by hand (a dimer in a box, a guessed
fcc cell) must be relaxed by the potential itself. Nothing here is a new optimiser: ASE's ``FIRE``,
``BFGS`` or ``LBFGS`` move the atoms, and ``FrechetCellFilter`` (ASE 3.23+) lets the cell follow.
A relaxation that does not reach the force tolerance, or whose volume runs away, is an error, not a
number: a half-relaxed energy would be silently wrong.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ._errors import PotentialError, transient_failure

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
#: A relaxed volume outside this factor of the starting one is treated as a divergence.
MAX_VOLUME_FACTOR = 3.0


@dataclass(frozen=True)
class RelaxOptions:
    """How to relax before taking the energy.

    Attributes:
        optimizer: one of ASE's ``FIRE``, ``BFGS``, ``LBFGS``.
        fmax: force tolerance, eV/Å (with ``relax_cell``, stresses are scaled into the same units by
            ASE's ``FrechetCellFilter``).
        steps: at most this many optimiser steps; not converged by then is an error.
        relax_cell: let the cell shape and volume relax too (``FrechetCellFilter``).
        keep_symmetry: keep the starting space group (ASE's ``FixSymmetry``), so a candidate phase
            stays that phase; used for elemental references.
    """

    optimizer: str = "FIRE"
    fmax: float = 0.05
    steps: int = 500
    relax_cell: bool = True
    keep_symmetry: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (self.fmax > 0 and math.isfinite(self.fmax)):
            raise ValueError(f"fmax must be a positive number of eV/Å, got {self.fmax!r}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")

    def key(self) -> str:
        """Text that names these settings in a cache key."""
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class Relaxed:
    """The outcome of a relaxation: total energy (eV), steps taken, and the relaxed atoms."""

    energy: float
    steps: int
    atoms: object  # ase.Atoms


def relax_atoms(atoms, calculator, options: RelaxOptions, name: str = "structure") -> Relaxed:
    """Relax a copy of ``atoms`` with ``calculator``; raise :class:`PotentialError` naming ``name`` when
    it does not converge within ``options.steps``, its volume runs away, or its energy is not finite."""
    import ase.optimize
    from ase.filters import FrechetCellFilter

    atoms = atoms.copy()
    atoms.calc = calculator
    if options.keep_symmetry:
        from ase.constraints import FixSymmetry

        atoms.set_constraint(FixSymmetry(atoms))
    start_volume = atoms.get_volume() if atoms.pbc.all() else None
    target = FrechetCellFilter(atoms) if options.relax_cell and atoms.pbc.all() else atoms
    optimizer = getattr(ase.optimize, options.optimizer)(target, logfile=None)
    try:
        converged = optimizer.run(fmax=options.fmax, steps=options.steps)
    except (RuntimeError, ValueError, FloatingPointError, IndexError, KeyError, NotImplementedError) as exc:
        raise PotentialError(f"{name}: relaxation failed ({exc})", transient=transient_failure(exc)) from None
    energy = float(atoms.get_potential_energy())
    if not math.isfinite(energy):
        raise PotentialError(f"{name}: relaxation reached a non-finite energy")
    if start_volume:
        factor = atoms.get_volume() / start_volume
        if not 1 / MAX_VOLUME_FACTOR <= factor <= MAX_VOLUME_FACTOR:
            raise PotentialError(f"{name}: relaxation diverged (volume changed by a factor {factor:.2f})")
    if not converged:
        raise PotentialError(f"{name}: relaxation did not reach fmax {options.fmax} eV/Å in {options.steps} "
                             f"{options.optimizer} steps")
    return Relaxed(energy, int(optimizer.nsteps), atoms)
