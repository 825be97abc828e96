"""Train a CGAT (from scratch, or from a parent model) on one PBE property of the shared mp_gap data and save it with a model card.

This is how the shipped models ``CGAT-PBE-Eform``, ``CGAT-PBE-Ehull`` and ``CGAT-PBE-BandGap`` are
made. It is resumable: run the same command again after an interruption and it continues from the
last finished epoch in ``--run``. Graphs are converted once into ``--graph-cache`` and reused.

    python examples/pretrain_pbe.py --target e_form_pbe --name CGAT-PBE-Eform --epochs 3
    python examples/pretrain_pbe.py --target e_form_pbe --name CGAT-PBE-Eform --parent CGAT-PBE-Eform --policy full \
        --epochs 10 --lr 3e-4 --precision bf16-mixed    # a warm restart: a new cycle (the card lists every stage)
    python examples/pretrain_pbe.py --target e_hull_pbe --name CGAT-PBE-Ehull-stage1 --loss huber --epochs 11 --lr 1e-3
    python examples/pretrain_pbe.py --target e_hull_pbe --name CGAT-PBE-Ehull --parent runs/models/CGAT-PBE-Ehull-stage1 \
        --policy full --loss huber --epochs 10 --lr 2.5e-4 --output-min 0 --calibrate-offset

With ``--parent`` (a shipped model name or a saved model folder) the parent's weights are the start
and ``--policy`` chooses what trains: inter-property transfer. Mind the shared splits: they are drawn
per property, so a formation-energy parent has seen most of the hull-distance test structures (whose
hull distances are computed from those very formation energies); the shipped hull model is therefore
trained from scratch, in two stages on its own split (the second a lower-learning-rate cycle from the
first's weights).

Writes the model folder to ``--save`` (default ``runs/models/<name>``) with ``metadata`` holding the
model card: property, units, functional, data and split, preset, training settings, test MAE, the
median-prediction baseline and the command. A warm restart (``--parent`` is the model's own name or
folder, ``--name`` the same) carries the parent's ``stages`` and ``cpu_hours`` on and adds this stage
(``matgl_cgat.workflows.training_history``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from matgl_cgat import CGAT
from matgl_cgat.data import default_data_dir, load_dataset, split_from_file
from matgl_cgat.metrics import metrics_for
from matgl_cgat.transfer import calibrate_offset
from matgl_cgat.workflows import training_history

UNITS = {"e_form_pbe": "eV/atom", "e_hull_pbe": "eV/atom", "gap_pbe": "eV", "vol_pbe": "A^3/atom"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=sorted(UNITS))
    parser.add_argument("--name", required=True, help="model name, e.g. CGAT-PBE-Eform")
    parser.add_argument("--data", type=Path, default=None, help="folder with mp_gap.jsonl.gz and splits.json")
    parser.add_argument("--preset", default="small", help="architecture when training from scratch")
    parser.add_argument("--parent", default=None, help="start from this model (shipped name or folder)")
    parser.add_argument("--policy", default="full", help="freeze policy when --parent is given")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the triangular cycle")
    parser.add_argument("--period", type=int, default=None, help="cycle length in epochs (default: --epochs)")
    parser.add_argument("--loss", default="l1", choices=["l1", "huber", "mse"],
                        help="training loss on normalised targets (huber for the hull distance: half its values are 0)")
    parser.add_argument("--huber-delta", type=float, default=1.0, help="Huber threshold in target std units")
    parser.add_argument("--output-min", type=float, default=None,
                        help="lower bound of the saved model's predictions (0 for hull distances and gaps)")
    parser.add_argument("--average-last", type=int, default=None, metavar="N",
                        help="save the mean of the last N epochs' weights instead of the best epoch's")
    parser.add_argument("--calibrate-offset", action="store_true",
                        help="after training, shift the output by the constant that minimises the validation MAE "
                             "(with --output-min applied): for Huber/MSE-trained models of piled-up targets")
    parser.add_argument("--shell-blend", type=float, default=None, metavar="A",
                        help="edge ranks blend neighbouring shells over A angstrom above the tolerance "
                             "(issue #36; default: the parent's setting, 0 from scratch)")
    parser.add_argument("--shell-counts", type=int, default=0, metavar="S",
                        help="from scratch: add the occupancy of the innermost S neighbour shells to each atom's "
                             "input (issue #36; 0: the paper's model)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument("--devices", default="auto", help="devices (processes) per node")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--strategy", default="auto", help="e.g. ddp")
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default runs/<name>)")
    parser.add_argument("--graph-cache", type=Path, default=Path("runs/graph_cache"))
    parser.add_argument("--save", type=Path, default=None, help="model folder (default runs/models/<name>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("mp_gap data not found: pass --data PATH")
    run = args.run or Path("runs") / args.name
    save = args.save or Path("runs/models") / args.name

    if args.parent and args.shell_counts:
        parser.error("--shell-counts changes the architecture: from scratch only (no --parent)")
    if args.parent:
        import matgl

        model = matgl.load_model(args.parent)
        preset = model.metadata.get("preset", args.preset) if isinstance(model.metadata, dict) else args.preset
    else:
        torch.manual_seed(args.seed)  # the starting weights follow --seed, so an interrupted run resumes
        model, preset = CGAT.from_preset(args.preset, shell_counts=args.shell_counts), args.preset
    if args.shell_blend is not None:  # graphs (and their cache) follow the model's converter
        model.set_shell_blend(args.shell_blend)
    ds = load_dataset(Path(data_dir) / "mp_gap.jsonl.gz", args.target, cache_dir=args.graph_cache,
                      converter=model.graph_converter())
    print(ds.summary())
    parts = split_from_file(ds, Path(data_dir) / "splits.json", args.target)
    print({k: len(parts[k]) for k in ("train", "val", "test")})
    parent_card = model.metadata if args.parent and isinstance(model.metadata, dict) else None
    t0, cpu0 = time.time(), time.process_time()
    trained = model.finetune(parts["train"], parts["val"], policy=args.policy if args.parent else "full", renormalize=True, epochs=args.epochs,
                             lr=args.lr, period=args.period or args.epochs, batch_size=args.batch_size,
                             loss=args.loss, huber_delta=args.huber_delta, average_last=args.average_last,
                             out_dir=run, seed=args.seed, accelerator=args.accelerator,
                             devices=int(args.devices) if args.devices.isdigit() else args.devices,
                             num_nodes=args.num_nodes, strategy=args.strategy, precision=args.precision)
    if not trained.fit_result.is_global_zero:  # with several processes, rank 0 tests and saves
        return
    seconds, cpu_hours = time.time() - t0, (time.process_time() - cpu0) / 3600
    trained.set_output_min(args.output_min)  # inference only: training is the same with or without it
    calibration = calibrate_offset(trained, parts["val"]) if args.calibrate_offset else None
    if calibration:
        print(f"validation-fitted output shift {calibration['shift']:+.4g}: validation MAE "
              f"{calibration['mae_before']:.4f} -> {calibration['mae_after']:.4f}")
    y_train, y_test = parts["train"].labels[args.target], parts["test"].labels[args.target]
    pred = trained.predict_dataset(parts["test"])
    test_mae = float(np.abs(pred - y_test).mean())
    baseline = float(np.abs(np.median(y_train) - y_test).mean())
    record, domain = trained.metadata["finetune"], trained.metadata.get("domain")
    start = f"all weights of {args.parent}" if args.parent and args.policy == "full" else (
        f"{args.parent}, policy {args.policy}" if args.parent else "from scratch")
    stopped = f", stopped after epoch {record['stopped_at_epoch']}" if record.get("stopped_at_epoch") is not None else ""
    history = training_history(parent_card, args.name, {
        "what": f"{start}: one {args.period or args.epochs}-epoch cycle peaking at {args.lr:g} ({args.precision}, "
                f"{args.loss} loss){stopped}; best epoch {record['best_epoch']}",
        "best_val_mae": record["best_val_mae"], "test_mae": test_mae, "cpu_hours_measured": round(cpu_hours, 2)})
    trained.metadata = {
        "name": args.name,
        "property": args.target,
        "units": UNITS[args.target],
        "functional": "PBE",
        "data": "mp_gap (Materials Project, see shared/data/mp_gap/README.md)",
        "split": f"splits.json[{args.target!r}]: train {len(parts['train'])}, val {len(parts['val'])}, "
                 f"test {len(parts['test'])}",
        "preset": preset,
        "parent": args.parent,
        "policy": args.policy if args.parent else None,
        "output_min": args.output_min,
        "offset_calibration": calibration and {**calibration, "on": "validation split"},
        "training": {k: record[k] for k in ("epochs", "lr", "period", "loss", "huber_delta", "best_epoch",
                                            "best_val_mae", "weight_average", "seed", "stopped_at_epoch")
                     if k in record},
        "test_mae": test_mae,
        "test_metrics": {k: round(v, 4) if isinstance(v, float) else v
                         for k, v in metrics_for(args.target, y_test, pred).items()},
        "test_mae_predicting_train_median": baseline,
        "train_seconds_this_invocation": round(seconds),
        "command": "python examples/pretrain_pbe.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "domain": domain,
        **history,
    }
    trained.save(save)
    print(f"{args.name}: test MAE {test_mae:.4f} {UNITS[args.target]} (median baseline {baseline:.4f}); saved to {save}")


if __name__ == "__main__":
    main()
