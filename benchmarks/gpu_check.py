"""One short check to run when a GPU is there: golden answers on the GPU, then training speed and memory.

Why: PyPI's DGL has no CUDA build, so GPUs are reached through the PyG stack (MatGL 4). Nothing in the
package's prediction or training is meant to be CPU-only; this script is the proof, sized to finish
in a few minutes on one GPU (the device machines lend 15 minutes per issue, start-up included):

1. **Golden answers**: every shipped model's raw outputs (normalised means, log sigmas, metal logits)
   on the demo crystals and the shared sample of ``tests/golden``, computed on the device in fp32
   (TF32 off) and compared with ``tests/golden/golden.json``: the largest relative deviation per model.
2. **Training**: the ``paper`` preset (and ``small``) for ``--steps`` AdamW steps on fixed batches of
   shared structures, fp32 and bf16 autocast: structures per second (after ``--warmup`` steps) and
   peak device memory.

It prints one JSON line per measurement and writes them all to ``--out``. It also runs on a CPU
(``--device cpu``, fewer steps) so that it is tested where no GPU is::

    python benchmarks/gpu_check.py --out $OUT/gpu_check.json                 # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --steps 2 --warmup 1 --sample 64 --batch-size 32 --models CGAT-PBE-Eform
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.golden from a source tree

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: Golden answers on another device: |actual - stored| <= GOLDEN_ATOL + GOLDEN_RTOL |stored|.
GOLDEN_ATOL, GOLDEN_RTOL = 1e-5, 1e-4


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def golden_on_device(names: list[str], data_dir: Path | None, device: torch.device) -> list[dict]:
    """Largest absolute deviation of each model's raw outputs on ``device`` from the stored golden ones."""
    import matgl

    from matgl_cgat.predict import example_structures
    from tests.golden import GOLDEN, raw_outputs, shared_sample

    stored = json.loads(GOLDEN.read_text())["models"]
    sets = {"demo": list(example_structures().values())}
    if data_dir is not None:
        sets["shared"] = shared_sample(data_dir)
    rows = []
    for name in names:
        model = matgl.load_model(name).to(device)
        for set_name, structures in sets.items():
            _synchronize(device)
            t0 = time.perf_counter()
            outputs = raw_outputs(model, structures, device)  # the golden test's own computation, on the device
            _synchronize(device)
            seconds = time.perf_counter() - t0
            deviation, within = 0.0, True
            for key, expected in stored[name][set_name].items():
                actual = np.asarray(outputs[key], dtype=float)
                expected = np.asarray(expected, dtype=float)
                gap = np.abs(actual - expected)
                deviation = max(deviation, float(gap.max()))
                # the golden test's rule (atol + rtol |expected|), with rtol 1e-4 for another device's kernels:
                # a purely relative measure fails outputs that are close to 0
                within &= bool(np.all(gap <= GOLDEN_ATOL + GOLDEN_RTOL * np.abs(expected)))
            rows.append({"check": "golden", "model": name, "set": set_name, "structures": len(structures),
                         "max_abs_deviation": deviation, "within_tolerance": within,
                         "seconds_incl_graph_building": round(seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def training_speed(preset: str, precision: str, batches: list, device: torch.device, steps: int,
                   warmup: int) -> dict:
    """Structures per second of ``steps`` AdamW steps over fixed batches, after ``warmup`` steps."""
    from matgl_cgat import CGAT

    torch.manual_seed(0)
    model = CGAT.from_preset(preset).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seen, losses, t0 = 0, [], None
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            t0, seen = time.perf_counter(), 0
        graph, target = batches[step % len(batches)]
        optimiser.zero_grad()
        with autocast:
            loss = (model.forward_normalized(graph)[:, 0].float() - target).abs().mean()
        loss.backward()
        optimiser.step()
        seen += len(target)
        losses.append(float(loss.detach()))
    _synchronize(device)
    seconds = time.perf_counter() - t0
    return {"check": "training", "preset": preset, "precision": precision, "steps": steps,
            "batch_size": len(batches[0][1]), "structures_per_s": round(seen / seconds, 1),
            "peak_memory_mib": _peak_memory_mib(device), "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4), "finite": bool(np.isfinite(losses).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mp_gap")
    parser.add_argument("--models", nargs="*", default=None, help="shipped names to check (default: all)")
    parser.add_argument("--presets", nargs="+", default=["paper", "small"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--sample", type=int, default=1024, help="shared structures in the training batches")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu to check the script itself")
    torch.backends.cuda.matmul.allow_tf32 = False  # golden answers are fp32 answers
    torch.backends.cudnn.allow_tf32 = False
    from pymatgen.core import Structure

    import matgl_cgat
    from matgl_cgat import CGAT
    from matgl_cgat.graph import batch_graphs, stack_description

    data_dir = args.data if (args.data / "mp_gap.jsonl.gz").is_file() else None
    rows: list[dict] = [{"check": "stack", "stack": stack_description(), "device": str(device),
                         "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}]
    print(json.dumps(rows[0]), flush=True)
    names = args.models if args.models is not None else sorted(matgl_cgat.pretrained.available_models())
    rows += golden_on_device(names, data_dir, device)
    if data_dir is None:
        print(f"no shared data at {args.data}: training speed not measured", flush=True)
    else:
        records = []
        with gzip.open(data_dir / "mp_gap.jsonl.gz", "rt") as f:
            for line in f:
                record = json.loads(line)
                if record.get("e_form_pbe") is not None:
                    records.append(record)
                if len(records) == args.sample:
                    break
        converter = CGAT.from_preset("small").graph_converter()  # every preset builds the same graph
        graphs = [converter.get_graph(Structure.from_dict(r["structure"]))[0] for r in records]
        y = torch.tensor([r["e_form_pbe"] for r in records], dtype=torch.float32)
        size = min(args.batch_size, len(graphs))  # a sample smaller than one batch is one batch
        if size == 0:
            raise SystemExit(f"no structures with e_form_pbe in {data_dir / 'mp_gap.jsonl.gz'}")
        batches = [(batch_graphs(graphs[s : s + size]).to(device), y[s : s + size].to(device))
                   for s in range(0, len(graphs) - size + 1, size)]
        for preset in args.presets:
            for precision in args.precisions:
                rows.append(training_speed(preset, precision, batches, device, args.steps, args.warmup))
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
