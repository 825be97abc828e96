"""Universal interatomic potentials as a cheap, large-data fidelity (issue #34).

Potentials trained on 10^5-10^6 PBE or r2SCAN calculations (MatGL's M3GNet/TensorNet-MatPES, CHGNet,
SevenNet, MACE) give formation enthalpies that beat a CGAT trained on this package's 35,592 PBE
crystals; CGAT's place is to learn what they still get wrong. This package computes a potential's
formation enthalpy for any structures (:func:`formation_enthalpies`: its own elemental references,
static or relaxed, batched, cached, resumable) and the cheapest fix on top of it, a per-element linear
correction of its residual (:class:`ElementCorrection`), and the prediction path of Δ-models, CGATs that
learn what the potential still gets wrong (:class:`PotentialAnchor`, :func:`anchored_predictions`).
The model core never imports it.
"""

from __future__ import annotations

from ._anchored import CARD_KEY, POTENTIALS_ENV, PotentialAnchor, anchor_of, anchored_predictions
from ._cache import ENV_VAR, EnergyCache, ReferenceCache, default_cache_dir, structure_digest
from ._correction import ElementCorrection
from ._energy import CalculatorEnergy, EnergySource, MatGLPotentialEnergy
from ._load import load_potential
from ._enthalpy import EnthalpyResult, formation_enthalpies
from ._errors import MissingPotentialError, PotentialError
from ._named import KNOWN as NAMED_POTENTIALS
from ._named import NamedPotential, named_potential, parse_name
from ._references import (Candidate, ElementalReferences, data_file_candidates, elemental_references,
                          hand_built_candidates)
from ._relax import OPTIMIZERS, RelaxOptions, Relaxed, relax_atoms

__all__ = [
    "CARD_KEY",
    "POTENTIALS_ENV",
    "MissingPotentialError",
    "PotentialAnchor",
    "anchor_of",
    "anchored_predictions",
    "ENV_VAR",
    "OPTIMIZERS",
    "CalculatorEnergy",
    "Candidate",
    "ElementCorrection",
    "ElementalReferences",
    "EnergyCache",
    "EnergySource",
    "EnthalpyResult",
    "MatGLPotentialEnergy",
    "NAMED_POTENTIALS",
    "NamedPotential",
    "named_potential",
    "parse_name",
    "PotentialError",
    "ReferenceCache",
    "RelaxOptions",
    "Relaxed",
    "data_file_candidates",
    "default_cache_dir",
    "elemental_references",
    "formation_enthalpies",
    "hand_built_candidates",
    "load_potential",
    "relax_atoms",
    "structure_digest",
]
