"""Universal potentials whose PyPI wheels ship their weights, found by a short name such as ``chgnet:r2scan``.

A Δ-model's card must say which potential it stands on in a way that finds the same numbers again on
another machine. For a MatGL potential that is a folder name in MatGL's cache; for CHGNet and SevenNet
the weights come inside the pip wheel, so the wheel's version pins them, and a name
``package:model[:head]`` plus that version is enough. This module turns such a name into a
:class:`CalculatorEnergy` through the package's own ASE calculator, only from files the wheel
installed: a model the wheel does not ship is refused rather than downloaded.

Known names (the issue #34 measurements used the first and the SevenNet-MF-0 heads):

- ``chgnet:r2scan``, ``chgnet:0.3.0``, ``chgnet:0.2.0``: CHGNet (``chgnet`` 0.4.2; ``r2scan`` is its
  fine-tune to MP's r2SCAN calculations, ``0.3.0`` the MPtrj PBE model).
- ``sevenn:7net-0``, ``sevenn:7net-l3i5``: SevenNet on MPtrj (PBE).
- ``sevenn:7net-mf-0:r2scan``, ``sevenn:7net-mf-0:pbe``: SevenNet-MF-0, one model with an r2SCAN and
  a PBE head.

Both packages need torch 2.4 or newer, so they live on the ``[pyg]`` stack (``pip install
"matgl-cgat[pyg,potentials]"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._energy import CalculatorEnergy
from ._errors import MissingPotentialError


@dataclass(frozen=True)
class NamedPotential:
    """One potential a wheel ships: its package, the package's model name, and the head (modal) if any."""

    package: str
    model: str
    head: str | None = None

    @property
    def spec(self) -> str:
        return ":".join(p for p in (self.package, self.model, self.head) if p)

    @property
    def install(self) -> str:
        return self.install_version(PINNED[self.package])

    def install_version(self, version: str) -> str:
        """The install line for ``version`` of the package (a card names the version it was trained with)."""
        extra = ' (or "matgl-cgat[potentials]")' if version == PINNED[self.package] else ""
        return f'pip install "{self.package}=={version}"{extra}; it needs torch 2.4 or newer, the [pyg] stack'


#: The versions the ``[potentials]`` extra pins.
PINNED = {"chgnet": "0.4.2", "sevenn": "0.13.0"}


def wheel_version(identity: str, package: str) -> str | None:
    """The package version a calculator identity records (``"CHGNet-r2scan (chgnet 0.4.2)|..."``)."""
    import re

    found = re.search(rf"\({re.escape(package)} ([^)\s]+)\)", identity)
    return found.group(1) if found else None


#: package -> {model: heads (None: a single-head model)}
KNOWN = {
    "chgnet": {"r2scan": None, "0.3.0": None, "0.2.0": None},
    "sevenn": {"7net-0": None, "7net-l3i5": None, "7net-mf-0": ("r2scan", "pbe")},
}


def parse_name(spec) -> NamedPotential | None:
    """The :class:`NamedPotential` a ``package:model[:head]`` text names; None for anything else (a MatGL
    name or folder). A known package with an unknown model or head is a ``ValueError`` listing the known."""
    if not isinstance(spec, str) or ":" not in spec:
        return None
    package, _, rest = spec.partition(":")
    if package.lower() not in KNOWN:
        return None
    package = package.lower()
    model, _, head = rest.partition(":")
    models = KNOWN[package]
    heads = models.get(model.lower(), "unknown")
    known = ", ".join(f"{package}:{m}" + (f":{{{','.join(h)}}}" if h else "") for m, h in models.items())
    if heads == "unknown":
        raise ValueError(f"{spec}: {package} ships no model {model!r} in its wheel here; known: {known}")
    if heads is None and head:
        raise ValueError(f"{spec}: {package}:{model} has a single head; known: {known}")
    if heads is not None and head.lower() not in heads:
        raise ValueError(f"{spec}: {package}:{model} needs a head, one of {', '.join(heads)}; known: {known}")
    return NamedPotential(package, model.lower(), head.lower() or None)


def named_potential(spec: str) -> CalculatorEnergy:
    """The :class:`CalculatorEnergy` of a named potential (see the module docstring), on the CPU.

    Raises:
        MissingPotentialError: its package is not installed (the message has the install line), or its
            weights are not among the wheel's files.
        ValueError: an unknown model or head of a known package.
    """
    named = parse_name(spec)
    if named is None:
        raise ValueError(f"{spec!r} names no wheel-shipped potential (package:model[:head], e.g. chgnet:r2scan)")
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        version = installed(named.package)
    except PackageNotFoundError:
        raise MissingPotentialError(f"{named.spec} needs the {named.package} package, whose wheel ships its "
                                    f"weights: {named.install}") from None
    import contextlib
    import sys

    try:  # CHGNet prints banners on stdout, which would corrupt a CSV or JSON written there
        with contextlib.redirect_stdout(sys.stderr):
            return _chgnet(named, version) if named.package == "chgnet" else _sevenn(named, version)
    except MissingPotentialError:
        raise
    except (ImportError, OSError, RuntimeError, ValueError, AttributeError, KeyError) as exc:  # a broken install
        raise MissingPotentialError(f"{named.spec}: the installed {named.package} {version} could not load it "
                                    f"({type(exc).__name__}: {exc}); {named.install}") from None


def _chgnet(named: NamedPotential, version: str) -> CalculatorEnergy:
    from chgnet.model import CHGNet, CHGNetCalculator

    model = CHGNet.load(model_name=named.model, use_device="cpu", verbose=False)
    calc = CHGNetCalculator(model=model, use_device="cpu")
    # the name as the issue #34 labels were made with: the wheel's version pins the weights
    return CalculatorEnergy(calc, name=f"CHGNet-{named.model} (chgnet {version})")


def _sevenn(named: NamedPotential, version: str) -> CalculatorEnergy:
    import os

    import sevenn._const as const
    from sevenn.calculator import SevenNetCalculator

    attribute = {"7net-0": "SEVENNET_0_11Jul2024", "7net-l3i5": "SEVENNET_l3i5", "7net-mf-0": "SEVENNET_MF_0"}
    path = getattr(const, attribute[named.model], None)
    if not path or not os.path.isfile(path):  # never let sevenn download it
        raise MissingPotentialError(f"{named.spec}: the sevenn {version} installed here does not ship "
                                    f"{named.model}'s weights ({path}); {named.install}")
    calc = SevenNetCalculator(model=path, device="cpu", modal=named.head.upper() if named.head else None)
    species = _checkpoint_species(calc)
    head = f":{named.head}" if named.head else ""
    return CalculatorEnergy(calc, name=f"SevenNet-{named.model}{head} (sevenn {version})", elements=species)


def _checkpoint_species(calc) -> list[str] | None:
    """The elements a SevenNet calculator's model was trained on, where it says."""
    try:
        from ase.data import chemical_symbols

        type_map = calc.type_map  # atomic number -> model's type index
        return [chemical_symbols[z] for z in type_map]
    except (AttributeError, IndexError, TypeError):
        return None
