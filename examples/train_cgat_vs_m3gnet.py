"""Train CGAT and MatGL's M3GNet side by side with MatGL's own tools, on the same data and splits.

Both models go through the same MatGL pipeline: ``MGLDataset`` (each with its own graph converter),
``MGLDataLoader``, ``ModelLightningModule`` and a Lightning ``Trainer``; only the converter and the
model differ. Data: the first ``--n-train``/``--n-val``/``--n-test`` ids of the fixed ``e_form_pbe``
splits of the shared mp_gap set (PBE formation energy, eV/atom).

    python examples/train_cgat_vs_m3gnet.py --epochs 10 --n-train 2000

Runs on both MatGL generations (1.3 on DGL, 4.x on PyG). MatGL 4 changed M3GNet (its message passing,
and the set2set readout's parameter names), so M3GNet weights trained with MatGL 1.x do not load into
it: compare models trained on the same generation.

Prints the test MAE and training time of each model and writes them to ``--out``/comparison.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as pl
import numpy as np
import torch
from matgl.ext.pymatgen import Structure2Graph, get_element_list
from matgl.graph.data import MGLDataLoader
from matgl.models import M3GNet
from matgl.utils.training import ModelLightningModule

from matgl_cgat import CGAT
from matgl_cgat.data import (default_data_dir, graph_dataset, line_graph_in_batches, load_splits, mgl_collate,
                             read_structures)

TARGET = "e_form_pbe"


def load(data_dir: Path, n_train: int, n_val: int, n_test: int):
    splits = load_splits(data_dir / "splits.json", TARGET)
    wanted = {"train": splits["train"][:n_train], "val": splits["val"][:n_val], "test": splits["test"][:n_test]}
    rec = read_structures(data_dir / "mp_gap.jsonl.gz", TARGET, ids=set().union(*wanted.values()))
    pos = {rid: i for i, rid in enumerate(rec.ids)}
    return {
        name: ([rec.structures[pos[i]] for i in ids], [rec.labels[TARGET][pos[i]] for i in ids])
        for name, ids in wanted.items()
    }


def datasets(parts, converter, line_graph: bool):
    """One in-memory MatGL dataset per split (``graph_dataset`` builds it in a fresh folder: MatGL reuses
    stale caches otherwise). M3GNet's line graphs: in the dataset on MatGL 1.x, built by the model on 4.x."""
    return {name: graph_dataset(structures, {TARGET: labels}, converter, line_graph=line_graph)
            for name, (structures, labels) in parts.items()}


def train_and_test(name, model, data, mean, std, epochs, lr, batch_size, line_graph, seed):
    pl.seed_everything(seed)
    collate = mgl_collate(line_graph)
    train_loader, val_loader, test_loader = MGLDataLoader(
        train_data=data["train"], val_data=data["val"], test_data=data["test"], collate_fn=collate,
        batch_size=batch_size, num_workers=0, generator=torch.Generator().manual_seed(seed),
    )
    # CGAT de-normalises internally (stored mean/std); M3GNet gets MatGL's data_mean/data_std instead.
    module_norm = {"data_mean": 0.0, "data_std": 1.0} if isinstance(model, CGAT) else {"data_mean": mean, "data_std": std}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-6)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr * 0.05)
    module = ModelLightningModule(model=model, loss="l1_loss", optimizer=optimizer, scheduler=scheduler,
                                  include_line_graph=line_graph_in_batches(line_graph), **module_norm)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_model_summary=False)
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - t0
    results = trainer.test(module, test_loader, verbose=False)[0]
    return {"model": name, "test_mae": float(results["test_MAE"]), "train_seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--out", type=Path, default=Path("runs/cgat_vs_m3gnet"))
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=250)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH (folder with mp_gap.jsonl.gz and splits.json)")
    torch.set_num_threads(2)
    parts = load(Path(data_dir), args.n_train, args.n_val, args.n_test)
    y = np.array(parts["train"][1])
    mean, std = float(y.mean()), float(y.std())
    args.out.mkdir(parents=True, exist_ok=True)
    results = []

    cgat = CGAT.from_preset("small")
    cgat.set_normalization(mean, std)
    cgat_data = datasets(parts, cgat.graph_converter(), line_graph=False)
    results.append(train_and_test("CGAT small", cgat, cgat_data, mean, std, args.epochs, 1e-3,
                                  args.batch_size, False, args.seed))

    elements = get_element_list([s for split in parts.values() for s in split[0]])
    m3gnet = M3GNet(element_types=elements, is_intensive=True, readout_type="set2set")
    m3g_data = datasets(parts, Structure2Graph(element_types=elements, cutoff=5.0), line_graph=True)
    results.append(train_and_test("M3GNet", m3gnet, m3g_data, mean, std, args.epochs, 1e-3,
                                  args.batch_size, True, args.seed))

    baseline = float(np.abs(np.median(y) - np.array(parts["test"][1])).mean())
    print(f"\n{'model':12s} {'params':>10s} {'test MAE (eV/atom)':>20s} {'train s':>9s}")
    for r in results:
        print(f"{r['model']:12s} {r['parameters']:10d} {r['test_mae']:20.3f} {r['train_seconds']:9.0f}")
    print(f"{'median':12s} {'':>10s} {baseline:20.3f}")
    (args.out / "comparison.json").write_text(json.dumps({"results": results, "median_baseline_mae": baseline,
                                                          "args": {k: str(v) for k, v in vars(args).items()}},
                                                         indent=2))


if __name__ == "__main__":
    main()
