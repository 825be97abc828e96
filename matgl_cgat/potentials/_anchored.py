"""Δ-models: a CGAT whose output is added to a universal potential's formation enthalpy.

Route (c) of issue #34: CGAT, transferred from a PBE model, learns what a potential (plus its
per-element correction) still gets wrong about r2SCAN or measured formation enthalpies. Such a model
is useless without its potential, so its card carries a :class:`PotentialAnchor`: which potential
(name and identity: a digest of the weights and the MatGL generation, because the same weights give
other energies on MatGL 1 and MatGL 4), the elemental references it was trained with, and the
correction. Predicting recomputes nothing but each crystal's static energy.

:func:`anchored_predictions` is the one prediction path (the CLI's ``predict`` uses it). A potential that
cannot be found is an error that says where to put it; one whose identity differs from the card's is
refused, since the residual was learnt against that potential's numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._correction import ElementCorrection
from ._energy import EnergySource
from ._load import load_potential
from ._enthalpy import as_structures, formation_enthalpies
from ._errors import MissingPotentialError
from ._named import PINNED, parse_name, wheel_version
from ._references import ElementalReferences

#: Where a user may point at an anchor potential's folder without a command-line flag.
POTENTIALS_ENV = "MATGL_CGAT_POTENTIALS"
CARD_KEY = "anchor"
_FOUND: dict = {}


@dataclass
class PotentialAnchor:
    """The potential a Δ-model adds its output to, as its card records it.

    Attributes:
        potential: the potential's name (MatGL's: its folder name).
        identity: :attr:`EnergySource.identity` of the potential the model was trained against.
        references: element -> eV/atom, the potential's own elemental references used in training.
        correction: per-element correction added before CGAT's output (None: none).
        mode: ``"static"`` (energies on the given cells).
    """

    potential: str
    identity: str
    references: dict[str, float]
    correction: ElementCorrection | None = None
    mode: str = "static"
    origins: dict[str, str] = field(default_factory=dict)

    def as_card(self) -> dict:
        return {"potential": self.potential, "identity": self.identity, "mode": self.mode,
                "references_eV_per_atom": dict(self.references), "reference_origins": dict(self.origins),
                "correction": self.correction.as_dict() if self.correction else None,
                "how": "prediction = the potential's formation enthalpy (static energy minus these references) "
                       "+ the per-element correction + this model's output",
                "find_potential": _how_to_find(self.potential, self.identity)}

    @classmethod
    def from_card(cls, card: dict) -> PotentialAnchor:
        correction = card.get("correction")
        return cls(card["potential"], card["identity"], {k: float(v) for k, v in card["references_eV_per_atom"].items()},
                   ElementCorrection.from_dict(correction) if correction else None, card.get("mode", "static"),
                   dict(card.get("reference_origins") or {}))

    def source(self, where: str | Path | None = None) -> EnergySource:
        """The potential, from ``where``, ``$MATGL_CGAT_POTENTIALS`` (a folder holding it, or its folder),
        or MatGL's cache by name; a wheel-shipped potential (``chgnet:r2scan``) from its installed package,
        whatever folder is given (the folders are other Δ-models' potentials). Refused if its identity is
        not the card's."""
        key = (str(where), os.environ.get(POTENTIALS_ENV), self.potential, self.identity)
        if key in _FOUND:  # one load per process: the demo table and its predictions share it
            return _FOUND[key]
        if parse_name(self.potential) is not None:
            candidates = []
        else:
            candidates = [Path(p) for p in (where, os.environ.get(POTENTIALS_ENV)) if p]
            candidates = [p / self.potential if (p / self.potential / "model.json").is_file() else p
                          for p in candidates]
        tried = []
        for spec in [*candidates, self.potential]:
            try:
                source = load_potential(spec)
                break
            except (ValueError, FileNotFoundError) as exc:
                if parse_name(self.potential) is not None:  # a wheel's potential: its own message says what to do
                    raise MissingPotentialError(f"this model adds its output to the universal potential "
                                                f"{self.potential}: {exc}") from None
                tried.append(f"{spec}: {exc}")
        else:
            raise MissingPotentialError(
                f"this model adds its output to the universal potential {self.potential}, which was not found "
                f"({'; '.join(tried)[:400]}). Put its folder in MatGL's cache (~/.cache/matgl/{self.potential}), "
                f"or pass its folder with --potential PATH (Python: potential=PATH) or ${POTENTIALS_ENV}; "
                f"the shared copy is ../shared/models/matgl/{self.potential} (MatGL 1.3, the [dgl] stack)")
        if _numbers(source.identity) != _numbers(self.identity):  # the folder's name may differ
            named = parse_name(self.potential)
            version = wheel_version(self.identity, named.package) if named else None
            fix = (f"; install the version it was trained with: {named.install_version(version)}" if version else "")
            raise ValueError(f"{self.potential}: the potential found has identity {source.identity!r}, but this model "
                             f"was trained against {self.identity!r} (other weights, or another MatGL generation whose "
                             f"numbers differ); its predictions would be wrong{fix}")
        _FOUND[key] = source
        return source

    def values(self, structures: Sequence, ids: Sequence[str], *, potential=None, cache_dir=None,
               on_error: str = "raise", progress: bool = False):
        """The anchor's value for each structure (eV/atom; NaN where skipped) and the skips."""
        structures = as_structures(structures)
        source = potential if isinstance(potential, EnergySource) else self.source(potential)
        refs = ElementalReferences(self.identity, dict(self.references), dict(self.origins))
        result = formation_enthalpies(structures, source, ids=ids, references=refs, cache_dir=cache_dir,
                                      on_error=on_error, progress=progress)
        values = result.e_form.copy()
        if self.correction is not None:
            values += self.correction.shift(structures)
        return values, result.skipped


def _numbers(identity: str) -> str:
    """What decides a potential's numbers: a MatGL potential's identity without its (folder) name, since
    the weights digest and MatGL generation follow it; a calculator's whole identity, whose name holds
    the model and its wheel's version."""
    return identity.split("|", 1)[-1] if "|matgl" in identity else identity


def _how_to_find(potential: str, identity: str) -> str:
    named = parse_name(potential)
    if named is not None:
        version = wheel_version(identity, named.package) or PINNED[named.package]
        return f"its weights ship in a pip wheel: {named.install_version(version)}"
    return f"by name in MatGL's cache, or a folder given as --potential / ${POTENTIALS_ENV}"


def anchor_of(model) -> PotentialAnchor | None:
    """The anchor a model's card records, or None for an ordinary model."""
    card = getattr(model, "metadata", None)
    if isinstance(card, dict) and isinstance(card.get(CARD_KEY), dict):
        return PotentialAnchor.from_card(card[CARD_KEY])
    return None


def anchored_predictions(model, structures: Sequence, ids: Sequence[str] | None = None, *, potential=None,
                         cache_dir=None, on_error: str = "raise", progress: bool = False) -> np.ndarray:
    """Predictions of a Δ-model: its potential's value plus its own output, for each structure."""
    import torch

    anchor = anchor_of(model)
    if anchor is None:
        raise ValueError("this model's card records no potential anchor: predict it as an ordinary model")
    ids = [str(i) for i in range(len(structures))] if ids is None else list(ids)
    base, _ = anchor.values(structures, ids, potential=potential, cache_dir=cache_dir, on_error=on_error,
                            progress=progress)
    out = np.full(len(structures), np.nan)
    converter = model.graph_converter()
    model.eval()
    with torch.no_grad():
        for i, s in enumerate(as_structures(structures)):
            if np.isfinite(base[i]):
                out[i] = base[i] + float(model(converter.get_graph(s)[0]))
    return out
