"""Multi-fidelity CGATs from trained ones: the functional becomes an input instead of a new model.

Two ways in, both copies (the source is untouched) and both keeping every trained weight:

- :func:`multi_fidelity_from` turns a single-fidelity model (e.g. ``CGAT-PBE-BandGap``) into a
  multi-fidelity one. All fidelities start as the source's prediction (zero-initialised scale and
  shift, :class:`~matgl_cgat.layers.FidelityFiLM`), each in its own units through its own
  normalisation; training on all fidelities' labels together (missing labels masked) then learns
  how they differ. This is the joint alternative to fine-tuning one model per functional.
- :func:`add_fidelity` adds a fidelity to a multi-fidelity model, for example SCAN to a model trained
  on PBE, HSE and GLLB-SC. Then ``finetune(..., policy="fidelity:scan", renormalize=False)`` trains the
  new fidelity's two vectors alone, so the old fidelities' predictions cannot change (forgetting is
  impossible by construction); a wider policy trades that guarantee for capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

#: Card entries of the source that stay true of the new model (everything else described the source).
_CARRIED = ("units", "preset", "label_columns", "fidelities")


def _rebuild(source, fidelities: Sequence[str], means: Sequence[float], stds: Sequence[float],
             films: Mapping[str, torch.Tensor], columns: Mapping[str, str] | None = None):
    # the source's own class rebuilds it (transfer/ never imports models/: models call transfer, not back)
    if not (hasattr(source, "fidelity_film") and hasattr(source, "_init_args")):
        raise TypeError(f"multi-fidelity models are CGATs, got {type(source).__name__}")
    args = {k: v for k, v in source._init_args.items() if not k.startswith("@")}
    args.update(fidelities=tuple(fidelities), ntargets=len(fidelities), data_mean=list(means), data_std=list(stds),
                sigma_hidden=None, metal_hidden=None)
    model = type(source)(**args)
    state = {k: v for k, v in source.state_dict().items()
             if not k.startswith(("sigma_head.", "metal_head.", "fidelity_film.", "data_mean", "data_std"))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("fidelity_film.", "data_")) for k in missing):
        raise ValueError(f"cannot carry the weights over: unexpected {unexpected}, missing {missing}")
    with torch.no_grad():
        for name, film in zip(model.fidelities, model.fidelity_film):
            if name in films:
                film.film.copy_(films[name])
    card = getattr(source, "metadata", None) if isinstance(getattr(source, "metadata", None), dict) else {}
    model.metadata = {k: card[k] for k in _CARRIED if k in card}
    model.metadata.update(parent=card.get("name"), fidelities=list(model.fidelities))
    if columns is not None:
        model.metadata["label_columns"] = dict(columns)
    return model


def multi_fidelity_from(source, normalization: Mapping[str, tuple[float, float]],
                        label_columns: Mapping[str, str] | None = None):
    """A multi-fidelity copy of a single-fidelity CGAT.

    Every fidelity starts from the source's normalised output, de-normalised with its own (mean, std):
    exactly the source's prediction for a fidelity whose normalisation equals the source's, the source's
    prediction rescaled to that fidelity's label distribution otherwise.

    Args:
        normalization: ``{fidelity: (mean, std)}`` of each fidelity's training labels, in the order the
            model's outputs should have (the label columns used in training must follow it).
        label_columns: ``{fidelity: data column}`` (e.g. ``{"hse": "gap_hse"}``), stored in the card so
            that tools find each fidelity's labels (default: the fidelity names).
    """
    if getattr(source, "fidelities", None):
        raise ValueError(f"the source already has fidelities {list(source.fidelities)}; use add_fidelity")
    if getattr(source, "ntargets", 1) != 1:
        raise ValueError("the source must predict one property (ntargets=1)")
    names = list(normalization)
    columns = {f: (label_columns or {}).get(f, f) for f in names}
    return _rebuild(source, names, [normalization[f][0] for f in names], [normalization[f][1] for f in names], {},
                    columns)


def add_fidelity(model, name: str, mean: float, std: float, start_from: str | None = None,
                 label_column: str | None = None):
    """A copy of a multi-fidelity CGAT with one more fidelity (the last output column).

    Args:
        mean, std: normalisation of the new fidelity's labels (from its training labels).
        start_from: an existing fidelity whose scale and shift the new one starts from (default: none,
            i.e. the shared prediction); e.g. ``"hse"`` for SCAN gaps, which lie closer to HSE than PBE.
        label_column: the data column of its labels (default: ``name``), added to the card's
            ``label_columns``.
    """
    old = list(getattr(model, "fidelities", None) or ())
    if not old:
        raise ValueError("add_fidelity needs a multi-fidelity model; make one with multi_fidelity_from")
    if name.lower() in (f.lower() for f in old):
        raise ValueError(f"the model already has fidelity {name!r}")
    films = {f: film.film.detach().clone() for f, film in zip(old, model.fidelity_film)}
    if start_from is not None:
        films[name] = films[old[model.fidelity_index(start_from)]].clone()
    means = model.data_mean.tolist() + [float(mean)]
    stds = model.data_std.tolist() + [float(std)]
    card = getattr(model, "metadata", None) if isinstance(getattr(model, "metadata", None), dict) else {}
    columns = {**{f: f for f in old}, **(card.get("label_columns") or {}), name: label_column or name}
    tuned = _rebuild(model, [*old, name], means, stds, films, columns)
    tuned.metadata["parent"] = card.get("name", card.get("parent"))
    if card.get("property"):  # still the same property, now at one more fidelity
        tuned.metadata["property"] = card["property"]
    if card.get("domain"):  # the old fidelities keep what they were trained on
        tuned.metadata["domain"] = card["domain"]
    return tuned
