"""Golden answers every supported stack must reproduce: the shipped models' raw outputs on the demo
crystals and on a fixed sample of the shared structures, and a short seeded training run's losses.

The stored file (``golden.json``) is written on the default stack by ``python -m tests.golden``; the
test (``tests/test_golden.py``) recomputes everything on whatever stack it runs on. Raw outputs
(normalised means, log sigmas, metal logits) are compared, not gated answers: a metal logit a hair
from its threshold could flip a gated 0 eV, while the logit itself is what must agree.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).with_name("golden.json")
#: Every SAMPLE_EVERY-th record of mp_gap.jsonl.gz, SAMPLE_SIZE of them: a fixed, stack-independent sample
#: (no identifiers of the shared data are stored here, only model outputs).
SAMPLE_EVERY, SAMPLE_SIZE = 150, 200
TRAIN_STEPS = 5


def shared_sample(data_dir: Path) -> list:
    from pymatgen.core import Structure

    rows = []
    with gzip.open(data_dir / "mp_gap.jsonl.gz", "rt") as f:
        for i, line in enumerate(f):
            if i % SAMPLE_EVERY == 0:
                rows.append(Structure.from_dict(json.loads(line)["structure"]))
                if len(rows) == SAMPLE_SIZE:
                    break
    return rows


def raw_outputs(model, structures: list, device=None) -> dict[str, list]:
    """``{"out": (B, T[, +T]) normalised outputs, "sigma": log sigmas, "metal": logits, "novelty": (B,)}`` as lists; with
    ``device``, the batches go there (the model must be there already: ``benchmarks/gpu_check.py``)."""
    from matgl_cgat.graph import batch_graphs

    converter = model.graph_converter()
    graphs = [converter.get_graph(s)[0] for s in structures]
    model.eval()
    parts: dict[str, list] = {"out": [], "sigma": [], "metal": [], "novelty": []}
    with torch.no_grad():
        for start in range(0, len(graphs), 50):
            batch = batch_graphs(graphs[start : start + 50])
            features = model.represent(batch if device is None else batch.to(device))
            parts["out"].append(model.head_output(features))
            if model.sigma_head is not None:
                parts["sigma"].append(model.sigma_output(features))
            if model.metal_head is not None:
                parts["metal"].append(model.metal_logit(features))
            if getattr(model, "novelty", None) is not None:  # the representation-domain check, unwidened
                parts["novelty"].append(model.novelty(features))
    return {k: torch.cat(v).double().tolist() for k, v in parts.items() if v}


def training_losses(structures: list, labels: list[float]) -> list[float]:
    """L1 losses of TRAIN_STEPS full-batch AdamW steps of the shipped CGAT-PBE-Eform (fp32, fixed
    batch): deterministic on any stack, so two stacks' training must agree step by step."""
    import matgl

    from matgl_cgat.graph import batch_graphs

    model = matgl.load_model("CGAT-PBE-Eform")
    model.train()
    graph = batch_graphs([model.graph_converter().get_graph(s)[0] for s in structures])
    y = (torch.tensor(labels) - model.data_mean) / model.data_std
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-6)
    losses = []
    for _ in range(TRAIN_STEPS):
        optimiser.zero_grad()
        loss = (model.forward_normalized(graph)[:, 0] - y).abs().mean()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    return losses


def compute(data_dir: Path | None) -> dict:
    import matgl

    import matgl_cgat
    from matgl_cgat.predict import example_structures

    demo = list(example_structures().values())
    shared = shared_sample(data_dir) if data_dir is not None else None
    out = {"models": {}, "training": {"labels": [-1.6, 0.5, 0.2, -3.0, 0.5]}}  # 0.5 eV/atom above the model: a loss to lower
    for name in sorted(matgl_cgat.pretrained.available_models()):
        model = matgl.load_model(name)
        out["models"][name] = {"demo": raw_outputs(model, demo)}
        if shared is not None:
            out["models"][name]["shared"] = raw_outputs(model, shared)
    out["training"]["losses"] = training_losses(demo, out["training"]["labels"])
    return out


def compare(expected, actual, rtol: float = 1e-5, atol: float = 1e-5, where: str = "") -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol,
                               atol=atol, err_msg=where)
