"""The one error a potential's energies raise for a structure it cannot handle."""

from __future__ import annotations


class PotentialError(ValueError):
    """A structure a universal potential cannot give an energy for (an element outside its table, a
    relaxation that diverged or did not converge, a non-finite energy); the message names the
    structure, the potential and the problem.

    ``transient`` marks a failure of the model's code on this run (a ``RuntimeError`` such as running out
    of memory) rather than a property of the structure: it is reported but never cached, so a rerun
    tries that structure again."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class MissingPotentialError(FileNotFoundError):
    """A potential that is not at hand: a MatGL potential not in MatGL's cache or the folder given, or a
    wheel-shipped one whose package is not installed; the message says where to put it or what to install."""


def transient_failure(exc: BaseException) -> bool:
    """Whether a model's failure may not recur on a rerun: a ``RuntimeError`` (out of memory, a device
    error), but not its deterministic subclasses (``NotImplementedError``, such as ASE's property not
    implemented, and ``RecursionError``)."""
    return isinstance(exc, RuntimeError) and not isinstance(exc, (NotImplementedError, RecursionError))
