"""Any potential a user names, as an :class:`EnergySource`: the one place that knows every kind.

Apart from :mod:`._energy` (how energies are computed) and :mod:`._named` (the wheel-shipped
potentials, themselves ASE calculators), so that neither needs the other to be imported first.
"""

from __future__ import annotations

from pathlib import Path

from ._energy import EnergySource, MatGLPotentialEnergy
from ._named import named_potential, parse_name


def load_potential(spec, batch_size: int = 16) -> EnergySource:
    """An :class:`EnergySource` for a MatGL potential name or folder, a wheel-shipped potential's name
    (``chgnet:r2scan``, ``sevenn:7net-mf-0:r2scan``: see :mod:`matgl_cgat.potentials._named`), or an
    already made source.

    A MatGL name is found the way MatGL finds it, on disk only (MatGL's cache; this package never
    downloads); a folder is read weights-only. Any other ASE calculator needs a name: wrap it in
    :class:`CalculatorEnergy` yourself.
    """
    if isinstance(spec, EnergySource):
        return spec
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"a MatGL potential name or folder, or an EnergySource; got {type(spec).__name__} "
                        "(wrap an ASE calculator as CalculatorEnergy(calc, name=...))")
    if parse_name(str(spec)) is not None:
        return named_potential(str(spec))
    from matgl.apps.pes import Potential

    from matgl_cgat.pretrained import load_model

    model = load_model(spec)
    if not isinstance(model, Potential):
        raise ValueError(f"{spec}: a {type(model).__name__}, not a MatGL Potential (a universal potential "
                         "such as M3GNet-MatPES-r2SCAN-v2025.1-PES)")
    return MatGLPotentialEnergy(model, name=Path(str(spec)).name, batch_size=batch_size)
