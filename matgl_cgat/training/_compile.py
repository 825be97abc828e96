"""``torch.compile`` for the CGAT core: an option, on by default only where it was measured faster.

Why here and not in ``models/``: compiling is a choice about how a model is run (the torch version,
the hardware, how long the run is against the compile time), not about what the model computes.
What is compiled is the plain-torch part only: the graph-library adapter (DGL or PyG) stays eager.
Shapes are dynamic (every batch has its own atom count), so one compilation serves every batch.

Measured side by side on the 2-core CPU (``benchmarks/core_speed.py --compile``, ``small`` preset, 512
structures, batch 64, fp32, three rounds; ``benchmarks/RESULTS.md``): with torch 2.13 (the PyG stack)
compiling the whole representation trains at 1.12-1.30x and predicts at 1.41-2.07x the eager speed, the
blocks alone at 1.10-1.15x and 1.29-1.82x, with outputs equal to 4e-9; compiling and warming up costs
38-52 s, so it pays after roughly 5,000-12,000 structure passes. With torch 2.2 (the DGL stack) the compiler fails on the custom
autograd functions of the attention blocks. Hence ``"auto"``: the representation is compiled for a
CPU training run of at least :data:`AUTO_MIN_PASSES` structure passes on torch 2.13 or newer, and
nowhere else (no GPU measurement exists yet).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

#: What :func:`compile_core` can compile: the attention blocks alone, or the whole representation
#: (blocks, Roost context and readout; where shapes depend on the data the compiler falls back to eager).
COMPILE_PARTS = ("blocks", "represent")
#: Settings of ``TrainConfig.compile``.
COMPILE_CHOICES = ("auto", "off", *COMPILE_PARTS)
#: ``"auto"`` compiles a training run of at least this many structure passes (epochs x training set):
#: 1.7-3.7x the measured break-even, as the compile time and the gain vary between machines and runs.
AUTO_MIN_PASSES = 20_000
#: Oldest torch on which compiling the core was measured to work and to be faster.
MEASURED_TORCH = (2, 13)


def torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def compile_core(model, part: str = "represent", **compile_kwargs) -> None:
    """Compile ``model``'s core in place with ``torch.compile(dynamic=True, **compile_kwargs)``.

    ``"blocks"`` compiles each attention block with ``nn.Module.compile`` (parameter names, and so
    saved weights, do not change); ``"represent"`` replaces the model's ``represent`` method on this
    instance by its compiled version. Either way the weights are the same tensors: the model trains,
    saves and predicts as before, only faster after a compilation of about a minute on a CPU. Undo it
    with :func:`uncompile_core`.
    """
    if part not in COMPILE_PARTS:
        raise ValueError(f"part={part!r}: choose one of {COMPILE_PARTS}")
    if torch_version() < (2, 3):
        raise RuntimeError(
            f"torch {torch.__version__} cannot compile this core (measured on 2.2: the compiler fails in the "
            "custom autograd functions of the attention blocks); it works with the [pyg] stack's torch (2.13)")
    compile_kwargs.setdefault("dynamic", True)
    if part == "blocks":
        for block in model.blocks:
            block.compile(**compile_kwargs)
    else:
        # the class's function, compiled, with the model as its first argument: a deep copy of the model
        # (weight averaging makes one) then calls it with the copy, not with this instance
        model.represent = functools.partial(torch.compile(type(model).represent, **compile_kwargs), model)


def uncompile_core(model) -> None:
    """Back to eager execution (the same weights)."""
    model.__dict__.pop("represent", None)
    for block in getattr(model, "blocks", []):
        block._compiled_call_impl = None


def auto_compile_part(passes: int, accelerator: str) -> str | None:
    """What ``"auto"`` compiles for a run of ``passes`` structure passes: ``"represent"`` or nothing."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return "represent" if on_cpu and torch_version() >= MEASURED_TORCH and passes >= AUTO_MIN_PASSES else None


@contextlib.contextmanager
def compiled_for_training(model, setting: str, passes: int, accelerator: str) -> Iterator[str | None]:
    """Compile the core for one training run as ``TrainConfig.compile`` says, eager again afterwards."""
    part = auto_compile_part(passes, accelerator) if setting == "auto" else (None if setting == "off" else setting)
    if part is not None and not hasattr(model, "blocks"):
        part = None  # not a CGAT: nothing this module knows how to compile
    if part is not None:
        compile_core(model, part)
    try:
        yield part
    finally:
        if part is not None:
            uncompile_core(model)
