"""Universal potentials as sources of total energies: any ASE calculator, or a MatGL ``Potential``.

ASE's calculator is the field's common interface (MatGL's ``PESCalculator``, CHGNet, SevenNet, MACE
all provide one), so every potential works through :class:`CalculatorEnergy`, one structure at a
time. A MatGL ``Potential`` gets :class:`MatGLPotentialEnergy`, which on MatGL's DGL generation
batches many crystals into one graph for static energies (measured on one core with
M3GNet-MatPES-r2SCAN: 48-63 structures/s batched against 16/s through the calculator, which also
computes forces and stresses). Relaxations always go through the calculator.

Each source has an ``identity``: the text that keys every cache of its energies. For a MatGL potential
it holds a digest of the weights and MatGL's major version, because the same weights give other
energies on MatGL 1 and MatGL 4 (``../shared/models/matgl/README.md``); an ASE calculator is named
by the user, who knows what it is.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence

from ._errors import PotentialError, transient_failure


class EnergySource:
    """A universal potential that gives total energies in eV.

    Attributes:
        name: short name for messages and reports.
        identity: what keys the caches of its energies and references (changes when the weights or the
            stack's numerics do).
        elements: the elements it was trained on, or None where it does not say.
    """

    name: str
    identity: str
    elements: frozenset[str] | None = None

    def calculator(self):
        """An ASE calculator for this potential (used for relaxations)."""
        raise NotImplementedError

    def check_elements(self, structure, label: str) -> None:
        """Raise :class:`PotentialError` naming ``label`` for an element outside the potential's table."""
        if self.elements is None:
            return
        outside = sorted({el.symbol for el in structure.composition.elements} - self.elements)
        if outside:
            raise PotentialError(f"{label}: element(s) {', '.join(outside)} are outside {self.name}'s table "
                                 f"of {len(self.elements)} elements")

    def static_energies(self, structures: Sequence, labels: Sequence[str]) -> list[float | PotentialError]:
        """Total energy of each structure (eV) on its given cell, or the :class:`PotentialError` saying why
        there is none; one structure at a time through :meth:`calculator`."""
        from pymatgen.io.ase import AseAtomsAdaptor

        calc = self.calculator()
        out: list[float | PotentialError] = []
        for structure, label in zip(structures, labels):
            try:
                self.check_elements(structure, label)
                atoms = AseAtomsAdaptor.get_atoms(structure)
                atoms.calc = calc
                try:
                    energy = float(atoms.get_potential_energy())
                except (RuntimeError, ValueError, IndexError, KeyError) as exc:  # as the batched path
                    raise PotentialError(f"{label}: {self.name} failed ({type(exc).__name__}: {exc})",
                                         transient=transient_failure(exc)) from None
                out.append(_finite(energy, label, self.name))
            except PotentialError as exc:
                out.append(exc)
        return out


class CalculatorEnergy(EnergySource):
    """Any ASE calculator (CHGNet's ``CHGNetCalculator``, SevenNet's ``SevenNetCalculator``, MACE, ...).

    Args:
        calculator: the ASE calculator.
        name: what it is, with its version and head, e.g. ``"CHGNet-0.3.0"`` or ``"SevenNet-MF-0:r2scan"``;
            it keys the caches, so two different calculators must not share a name.
        elements: the elements it supports, if known (a structure with others is refused up front).
    """

    def __init__(self, calculator, name: str, elements: Sequence[str] | None = None):
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name the calculator (it keys the energy caches), e.g. name='CHGNet-0.3.0'")
        self._calculator = calculator
        self.name = name
        self.identity = f"{name}|ase:{type(calculator).__module__}.{type(calculator).__name__}"
        self.elements = frozenset(elements) if elements is not None else None

    def calculator(self):
        return self._calculator


class MatGLPotentialEnergy(EnergySource):
    """A MatGL ``Potential`` (e.g. ``M3GNet-MatPES-r2SCAN-v2025.1-PES``): batched static energies on
    MatGL's DGL generation, MatGL's ``PESCalculator`` for relaxations.

    Args:
        potential: the loaded ``matgl.apps.pes.Potential``.
        name: a short name (default: the model class; :func:`load_potential` passes the folder name).
        batch_size: crystals per batched graph for static energies.
    """

    def __init__(self, potential, name: str | None = None, batch_size: int = 16):
        import matgl
        import torch
        from matgl.apps.pes import Potential

        if not isinstance(potential, Potential):
            raise TypeError(f"a MatGL Potential, not {type(potential).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number of crystals, got {batch_size!r}")
        self.potential = potential.eval()
        self.name = name or type(potential.model).__name__
        self.batch_size = int(batch_size)
        digest = hashlib.sha256()
        for key, tensor in sorted(potential.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().to(torch.float64).cpu().numpy().tobytes())
        major = matgl.__version__.split(".")[0]
        if int(major) >= 3:
            warnings.warn(
                f"MatGL {matgl.__version__}: MatGL 3.0 changed M3GNet's and TensorNet's message passing, and weights "
                "saved by MatGL 2 or earlier give wrong energies here. Measured with the MatPES v2025.1 folders: "
                "NaCl's formation enthalpy -1.09 (M3GNet-r2SCAN) and -1.19 (TensorNet-r2SCAN) eV/atom on MatGL "
                "4.1.2, against -2.08 on MatGL 1.3 and -2.13 measured. Check this potential against DFT labels, "
                "or use those weights on the [dgl] stack (MatGL 1.3).", UserWarning, stacklevel=2)
        self.identity = f"{self.name}|matgl{major}|sha256:{digest.hexdigest()[:16]}"
        self.elements = frozenset(potential.model.element_types)

    def calculator(self):
        from matgl.ext.ase import PESCalculator

        return PESCalculator(self.potential, stress_unit="eV/A3")  # ASE's unit; MatGL defaults to GPa

    def static_energies(self, structures: Sequence, labels: Sequence[str]) -> list[float | PotentialError]:
        from matgl_cgat.graph import graph_library

        if graph_library() != "dgl":  # MatGL 4's graphs: one at a time through its calculator
            return super().static_energies(structures, labels)
        out: list[float | PotentialError | None] = [None] * len(structures)
        good = []
        for i, (structure, label) in enumerate(zip(structures, labels)):
            try:
                self.check_elements(structure, label)
                good.append(i)
            except PotentialError as exc:
                out[i] = exc
        for start in range(0, len(good), self.batch_size):
            chunk = good[start : start + self.batch_size]
            try:
                energies = self._batched([structures[i] for i in chunk])
            except (RuntimeError, ValueError, IndexError) as exc:  # find the structure that fails alone
                if len(chunk) == 1:
                    out[chunk[0]] = PotentialError(f"{labels[chunk[0]]}: {self.name} failed ({exc})",
                                                   transient=transient_failure(exc))
                    continue
                energies = [self.static_energies([structures[i]], [labels[i]])[0] for i in chunk]
            for i, energy in zip(chunk, energies):
                out[i] = energy if isinstance(energy, PotentialError) else _as_result(energy, labels[i], self.name)
        return out  # type: ignore[return-value]

    def _batched(self, structures: Sequence) -> list[float]:
        import dgl
        import torch
        from matgl.ext.pymatgen import Structure2Graph

        model = self.potential.model
        converter = Structure2Graph(element_types=model.element_types, cutoff=model.cutoff)
        graphs, lattices, states = [], [], []
        for structure in structures:
            g, lattice, state = converter.get_graph(structure)
            graphs.append(g)
            lattices.append(torch.as_tensor(lattice, dtype=torch.float32).reshape(3, 3))
            states.append(torch.as_tensor(state, dtype=torch.float32).reshape(-1))
        forces, stresses = self.potential.calc_forces, self.potential.calc_stresses
        self.potential.calc_forces = self.potential.calc_stresses = False
        try:
            with torch.no_grad():
                energies = self.potential(dgl.batch(graphs), torch.stack(lattices), torch.stack(states))[0]
        finally:
            self.potential.calc_forces, self.potential.calc_stresses = forces, stresses
        return energies.reshape(-1).tolist()


def _finite(energy: float, label: str, name: str) -> float:
    if not math.isfinite(energy):
        raise PotentialError(f"{label}: {name} gave a non-finite energy")
    return energy


def _as_result(energy: float, label: str, name: str) -> float | PotentialError:
    try:
        return _finite(float(energy), label, name)
    except PotentialError as exc:
        return exc
