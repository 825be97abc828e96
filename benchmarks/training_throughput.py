"""End-to-end training throughput against model-only throughput, and where the time goes.

Why: a training run is more than the model: reading graphs from the cache, collating batches,
Lightning's loop, validation, checkpoints and logs. The training core is meant to keep all of that
under 10% of an epoch (end-to-end throughput at least 90% of the model's own on the same batches).

How, on seeded random ``--n-train`` / ``--n-val`` structures of the fixed ``e_form_pbe`` train / val
splits of the shared mp_gap data (graphs from the on-disk cache), ``small`` preset, batch 64:

1. model only: the epoch's batches are collated beforehand; forward, loss, backward and an AdamW
   step are timed over all of them (no data loading, no Lightning), once before and once after the
   end-to-end run (the mean of the two is the reference: single runs vary by about 10% here);
2. end to end: :func:`matgl_cgat.training.fit` for ``--epochs`` epochs with Lightning's
   ``SimpleProfiler``; an epoch's wall time runs from the start of its training to the end of its
   validation and checkpoint. Throughput is training structures / epoch wall time (the first epoch
   is reported apart: it loads the cache shards).

Run on an otherwise idle machine::

    DGLBACKEND=pytorch python benchmarks/training_throughput.py --cache runs/graph_cache \
        --out benchmarks/training_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")

import lightning as pl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


class EpochClock(pl.Callback):
    """Wall time of each epoch, from the start of training to the end of validation and checkpointing."""

    def __init__(self):
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, module):  # after validation and the checkpoint callbacks' hooks
        self.ends.append(time.perf_counter())


def model_only(model, batches, config) -> float:
    """Structures per second of forward + loss + backward + AdamW step over pre-collated batches."""
    from matgl_cgat.training import TrainingModule

    module = TrainingModule(model, config, ("e_form_pbe",))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=config.precision == "bf16-mixed")

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, _, _, _ = module._errors(batch)
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for batch in batches:
        step(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mp_gap folder (default: the shared one)")
    parser.add_argument("--cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--n-val", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--model-only", action="store_true", help="measure only the model-only throughput")
    parser.add_argument("--allocator", default="keep", choices=["keep", "system"],
                        help="glibc allocator setting (see matgl_cgat/_allocator.py)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lightning.pytorch.profilers import SimpleProfiler

    from matgl_cgat import CGAT
    from matgl_cgat.data import default_data_dir, load_dataset, split_from_file
    from matgl_cgat.training import collate_graphs, fit, recipe

    data = args.data or default_data_dir()
    if data is None:
        sys.exit("mp_gap data not found: pass --data")
    ds = load_dataset(Path(data) / "mp_gap.jsonl.gz", "e_form_pbe", cache_dir=args.cache, progress=False)
    parts = split_from_file(ds, Path(data) / "splits.json", "e_form_pbe")
    # seeded random subsets: the split files list ids in mat_id order, whose first entries are small cells
    pick = np.random.default_rng(0)
    train = parts["train"].subset(np.sort(pick.choice(len(parts["train"]), args.n_train, replace=False)))
    val = parts["val"].subset(np.sort(pick.choice(len(parts["val"]), args.n_val, replace=False)))
    y = train.labels["e_form_pbe"]
    config = recipe("cpu", epochs=args.epochs, progress=False, accelerator="cpu", devices=1,
                    precision=args.precision, num_workers=args.workers, allocator=args.allocator)

    torch.manual_seed(0)
    model = CGAT.from_preset("small")
    model.set_normalization(float(y.mean()), float(y.std()))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [collate_graphs([train[i] for i in order[s : s + config.batch_size]], ("e_form_pbe",))
               for s in range(0, len(order), config.batch_size)]
    if args.allocator == "keep":
        from matgl_cgat._allocator import keep_freed_memory

        keep_freed_memory()
    model_rate = model_only(model, batches, config)
    if args.model_only:
        import resource

        print(json.dumps({"model_only_structures_per_s": round(model_rate, 1), "allocator": args.allocator,
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
        return 0

    torch.manual_seed(0)
    model = CGAT.from_preset("small")
    model.set_normalization(float(y.mean()), float(y.std()))
    clock, profiler = EpochClock(), SimpleProfiler()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit(model.train(), train, val, config, out_dir=tmp, extra_callbacks=[clock], profiler=profiler)
    # model-only again after the run: the two model-only figures bracket the end-to-end one in time
    torch.manual_seed(0)
    again = CGAT.from_preset("small")
    again.set_normalization(float(y.mean()), float(y.std()))
    model_rate_after = model_only(again, batches, config)
    model_rates = [model_rate, model_rate_after]
    model_rate = float(np.mean(model_rates))
    epoch_seconds = [e - s for s, e in zip(clock.starts, clock.ends)]
    rates = [len(train) / s for s in epoch_seconds]
    steady = float(np.mean(rates[1:])) if len(rates) > 1 else rates[0]
    durations = {k: float(np.sum(v)) for k, v in profiler.recorded_durations.items()}
    total = float(np.sum(epoch_seconds))
    where = {k: round(v / total, 4) for k, v in sorted(durations.items(), key=lambda kv: -kv[1])
             if v / total > 0.005 and not k.startswith(("run_training_epoch", "run_training_batch", "[_TrainingEpochLoop]"))}
    result = {
        "n_train": len(train), "n_val": len(val), "mean_atoms_train": round(float(train.num_nodes.mean()), 1), "batch_size": config.batch_size, "threads": args.threads,
        "precision": args.precision, "workers": args.workers, "allocator": args.allocator,
        "model_only_structures_per_s": round(model_rate, 1),
        "model_only_before_and_after": [round(r, 1) for r in model_rates],
        "end_to_end_structures_per_s_per_epoch": [round(r, 1) for r in rates],
        "end_to_end_steady_structures_per_s": round(steady, 1),
        "end_to_end_over_model_only": round(steady / model_rate, 3),
        "share_of_epoch_time": where,
        "val_mae_per_epoch": [round(r["val_mae"], 4) for r in fitted.history],
        "torch": torch.__version__, "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ")
        if os.path.exists("/proc/cpuinfo") else None,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        from matgl_cgat._io import atomic_write_text

        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        old[f"{args.precision}_workers{args.workers}_{args.allocator}"] = result
        atomic_write_text(args.out, json.dumps(old, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
