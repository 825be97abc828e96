"""``mgl-cgat`` command line: thin wrappers around the package's functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _quickstart(args: argparse.Namespace) -> int:
    from matgl_cgat.quickstart import run_quickstart

    r = run_quickstart(args.data, args.out, args.n_train, args.n_val, args.n_test, args.epochs,
                       batch_size=args.batch_size, seed=args.seed, preset=args.preset)
    print(f"\nCGAT '{args.preset}' trained on {r.n_train} PBE formation energies ({r.epochs} epochs, "
          f"{r.train_seconds:.0f} s)")
    print(f"test MAE on {r.n_test} structures: {r.test_mae:.3f} eV/atom "
          f"(predicting the training median: {r.baseline_mae:.3f} eV/atom)")
    print(f"saved to {r.model_dir}; reloaded with matgl.load_model; predictions:")
    for name, value in r.predictions.items():
        print(f"  {name:22s} {value:+.3f} eV/atom")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import matgl

    from matgl_cgat.predict import example_structures, format_rows, predict_all, read_structure_files
    from matgl_cgat.pretrained import available_models

    names = args.model or sorted(available_models())
    if not names:
        print("mgl-cgat: error: no shipped CGAT models in this installation; pass --model PATH to a saved model",
              file=sys.stderr)
        return 2
    models = {Path(n).name: matgl.load_model(n) for n in names}
    structures = read_structure_files(args.files) if args.files else example_structures()
    rows = predict_all(models, structures)
    fmt = "table"
    if args.out:
        fmt = "json" if args.out.suffix.lower() == ".json" else "csv"
        args.out.write_text(format_rows(rows, models, fmt))
        print(f"wrote {len(rows)} predictions to {args.out}")
    else:
        print(format_rows(rows, models, args.format or fmt))
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from matgl_cgat.pretrained import available_models

    models = available_models()
    if not models:
        print("no shipped CGAT models in this installation")
    for name, folder in models.items():
        card = json.loads((folder / "model.json").read_text()).get("metadata") or {}
        print(f"{name}  ({folder})")
        for key, value in card.items():
            print(f"  {key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgl-cgat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="train a small CGAT on shared PBE formation energies, save, reload, predict")
    q.add_argument("--data", default=None, help="folder with mp_gap.jsonl.gz and splits.json "
                   "(default: $MATGL_CGAT_DATA or ../shared/data/mp_gap)")
    q.add_argument("--out", default="cgat_quickstart", help="output folder (default: %(default)s)")
    q.add_argument("--n-train", type=int, default=2000)
    q.add_argument("--n-val", type=int, default=250)
    q.add_argument("--n-test", type=int, default=500)
    q.add_argument("--epochs", type=int, default=10)
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--preset", default="small")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_quickstart)

    p = sub.add_parser("predict", help="predict structures with the shipped (or given) CGAT models")
    p.add_argument("files", nargs="*", help="CIF, POSCAR/CONTCAR/.vasp, (ext)XYZ or JSON files "
                   "(default: NaCl, Si, GaAs, SrTiO3 and Cu built in memory)")
    p.add_argument("--model", action="append", help="model name (CGAT-...) or saved model folder; repeatable "
                   "(default: every shipped model)")
    p.add_argument("--out", type=Path, help="write .csv or .json instead of printing a table")
    p.add_argument("--format", choices=["table", "csv", "json"], help="format when printing")
    p.set_defaults(func=_predict)

    m = sub.add_parser("models", help="list the shipped models with their model cards")
    m.set_defaults(func=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # DataError is a ValueError: one clear line, no traceback
        print(f"mgl-cgat: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
