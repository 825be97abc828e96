"""Training and prediction throughput of the model core on the batches of one fixed sample, per stack.

Why: issue #25 replaced DGL's edge softmax and segment operations by plain torch (dense k-neighbour
reshapes, scatter ops) so that one core runs on both MatGL stacks. This times that core, the way
the issue asks: the same structures and batches, model only (forward, L1 loss, backward, AdamW step
for training; forward without gradients for prediction), ``small`` preset, fp32, batch 64, 2 threads.
The structures are the first ``--n`` records of ``mp_gap.jsonl.gz`` whose formation energy is a label
(every ``--every``-th record), converted once by whichever converter the installed stack has.

Run it with each tree and stack on an otherwise idle machine and compare the printed lines::

    python benchmarks/core_speed.py --label "plain-torch core, DGL stack" --out benchmarks/core_speed.json
    # in a checkout of the previous core (git worktree add ../old 65a1b68), same interpreter:
    PYTHONPATH=../old python benchmarks/core_speed.py --label "DGL core" --out benchmarks/core_speed.json
    .venv-pyg/bin/python benchmarks/core_speed.py --label "plain-torch core, PyG stack" --out benchmarks/core_speed.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mp_gap")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the batches (best kept)")
    parser.add_argument("--compile", default="none", choices=["none", "blocks", "represent"],
                        help="torch.compile (dynamic shapes) the attention blocks or the whole representation")
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    from pymatgen.core import Structure

    import matgl
    import matgl_cgat
    from matgl_cgat import CGAT
    if args.compile != "none":
        from matgl_cgat.training import compile_core
    try:
        from matgl_cgat.graph import batch_graphs, stack_description
        stack = stack_description()
    except ImportError:  # the DGL-only tree before issue #25
        import dgl

        batch_graphs, stack = dgl.batch, f"MatGL {matgl.__version__} on DGL {dgl.__version__}, torch {torch.__version__}"
    rows = []
    with gzip.open(args.data / "mp_gap.jsonl.gz", "rt") as f:
        for i, line in enumerate(f):
            if i % args.every == 0:
                rows.append(json.loads(line))
                if len(rows) == args.n:
                    break
    model = CGAT.from_preset("small")
    converter = model.graph_converter()
    graphs = [converter.get_graph(Structure.from_dict(r["structure"]))[0] for r in rows]
    y = torch.tensor([r["e_form_pbe"] for r in rows], dtype=torch.float32)
    batches = [(batch_graphs(graphs[s : s + args.batch_size]), y[s : s + args.batch_size])
               for s in range(0, len(graphs), args.batch_size)]
    reference = None
    if args.compile != "none":  # the same weights uncompiled give the reference answers
        model.eval()
        with torch.no_grad():
            reference = model.forward_normalized(batches[0][0])
        compiled_at = time.perf_counter()
        compile_core(model, args.compile)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_pass() -> float:
        model.train()
        t = time.perf_counter()
        for g, target in batches:
            optimiser.zero_grad()
            loss = (model.forward_normalized(g)[:, 0] - target).abs().mean()
            loss.backward()
            optimiser.step()
        return time.perf_counter() - t

    def predict_pass() -> float:
        model.eval()
        t = time.perf_counter()
        with torch.no_grad():
            for g, _ in batches:
                model.forward_normalized(g)
        return time.perf_counter() - t

    if reference is not None:
        model.eval()
        with torch.no_grad():
            deviation = float((model.forward_normalized(batches[0][0]) - reference).abs().max())
    train_pass(), predict_pass()  # warm-up (and compilation)
    warmup_s = time.perf_counter() - compiled_at if reference is not None else None
    train = min(train_pass() for _ in range(args.repeats))
    predict = min(predict_pass() for _ in range(args.repeats))
    result = {"label": args.label, "stack": stack, "structures": len(graphs), "batch_size": args.batch_size,
              "train_structures_per_s": round(len(graphs) / train, 1),
              "predict_structures_per_s": round(len(graphs) / predict, 1), "compile": args.compile,
              **({"compile_and_warmup_s": round(warmup_s, 1), "max_abs_output_deviation": deviation}
                 if reference is not None else {}),
              "matgl_cgat": str(Path(matgl_cgat.__file__).parent)}
    print(json.dumps(result))
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.is_file() else []
        old = [r for r in old if r["label"] != args.label] + [result]
        args.out.write_text(json.dumps(old, indent=2))


if __name__ == "__main__":
    main()
