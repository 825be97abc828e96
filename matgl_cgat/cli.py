"""``mgl-cgat`` command line: thin wrappers around the package's functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matgl_cgat import __version__
from matgl_cgat._arguments import count as _count
from matgl_cgat._arguments import finite_float as _finite_float
from matgl_cgat._arguments import positive_float as _positive_float
from matgl_cgat._arguments import positive_int as _positive_int
from matgl_cgat.graph import stack_description


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


def _load_model(spec: str):
    """``--model``/``--parent``: the package's one resolver (a shipped name means the shipped model;
    folders are read weights-only, never unpickled), saying on stderr when a local folder is used."""
    from matgl_cgat.pretrained import REGISTERED, SHIPPED, load_model

    model = load_model(spec)
    if model.source not in (SHIPPED, REGISTERED):
        where = "" if model.source == str(Path(spec).expanduser().absolute()) else f": {model.source}"
        print(f"mgl-cgat: using the model folder {spec} (not a shipped model){where}", file=sys.stderr)
    return model


def _model_columns(specs: list[str], models: list) -> list[str]:
    """Column names for ``--model`` values: a shipped or registered model's name; for a folder the model
    card's name (what ``train``/``finetune`` wrote: run and property), else the folder's name; where two
    would collide, each says which folder it is.
    Never a silently dropped column."""
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ValueError(f"--model {repeated[0]}: given more than once")
    from matgl_cgat.pretrained import REGISTERED, SHIPPED

    names = []
    for spec, model in zip(specs, models):
        card = model.metadata if isinstance(getattr(model, "metadata", None), dict) else {}
        if getattr(model, "source", None) in (SHIPPED, REGISTERED):  # a name the user typed: shown as typed
            names.append(Path(spec).name)
        else:
            names.append(str(card.get("name") or Path(spec).name or spec))
    return [f"{n} ({spec})" if names.count(n) > 1 else n for n, spec in zip(names, specs)]


def _predict(args: argparse.Namespace) -> int:
    from matgl_cgat.predict import (
        MEASURED_FILES,
        by_fidelity,
        example_structures,
        flat_row,
        format_rows,
        iter_structure_files,
        json_row,
        may_carry_labels,
        predict_rows,
        table_columns,
        units_of,
    )
    from matgl_cgat.pretrained import available_models

    from matgl_cgat._table_out import StreamingTable, out_format

    if args.out:
        out_format(args.out)  # a wrong suffix is refused before any model loads
    fabric = None
    if any(v is not None for v in (args.devices, args.num_nodes, args.strategy, args.accelerator)):
        if not (args.out and args.files):
            raise ValueError("--devices/--num-nodes/--strategy/--accelerator: a screen over several processes reads "
                             "FILES and writes --out (each process a part, merged in input order)")
        if args.out.exists() and not args.overwrite:
            raise ValueError(f"--out {args.out}: exists; choose another name or pass --overwrite to replace it")
        from matgl_cgat._parts import launch

        devices = int(args.devices) if str(args.devices).isdigit() else args.devices
        fabric = launch(args.accelerator, devices, args.num_nodes, args.strategy)
        if fabric.world_size > 1 and args.threads is None and args.workers is None:
            args.threads, args.workers = 1, 0  # the machine's cores are shared by the processes already
        args.quiet = args.quiet or fabric.global_rank != 0
    parallel = _parallelism(args.threads, args.workers, bool(args.files), args.quiet)
    names = args.model or sorted(available_models())
    if not names:
        print("mgl-cgat: error: no shipped CGAT models in this installation; pass --model PATH to a saved model",
              file=sys.stderr)
        return 2
    models_in_order = [_load_model(spec) for spec in names]
    loaded = dict(zip(_model_columns(names, models_in_order), models_in_order))
    if not args.model:  # the default table holds a delta-model only where its potential is at hand
        from matgl_cgat.potentials import MissingPotentialError, anchor_of

        for name, model in list(loaded.items()):
            anchor = anchor_of(model)
            if anchor is None:
                continue
            try:
                anchor.source(args.potential)
            except MissingPotentialError:
                del loaded[name]
                print(f"mgl-cgat: {name} left out: it needs the potential {anchor.potential}, not at hand "
                      f"({anchor.as_card()['find_potential']}); see its card (mgl-cgat models)", file=sys.stderr)
            except ValueError as exc:  # found, but not the numbers it was trained against
                del loaded[name]
                print(f"mgl-cgat: {name} left out: {exc}", file=sys.stderr)
    models = by_fidelity(loaded, args.fidelity)
    skipped: list = []
    positions: dict = {}
    if fabric is not None:  # this process's share of the batches, not even parsed by the others
        from matgl_cgat._parts import takes

        items = iter_structure_files(args.files, args.on_error, skipped, positions=positions,
                                     select=takes(fabric.global_rank, fabric.world_size, args.batch_size), parse=False)
    elif args.files:  # streamed: read, predicted and written batch by batch
        items = iter_structure_files(args.files, args.on_error, skipped, parse=False)
    else:
        items = ((sid, s, {}) for sid, s in example_structures().items())
    references = None
    if args.labels != "none" and (args.files == [] or args.labels != "auto"):
        from matgl_cgat._reference import find_in_data
        from matgl_cgat.data import default_data_dir

        source = Path(args.labels) if args.labels not in ("auto", "mp_gap") else None
        if source is None:
            folder = default_data_dir()
            source = folder / "mp_gap.jsonl.gz" if folder is not None else None
        if source is not None and source.is_file():
            items = _parsed_items(items, args.on_error, skipped)  # matching needs every structure at once
            structures = {sid: s for sid, s, _ in items}
            references = find_in_data(structures, source)
            # measured values (and r2SCAN) of the same crystals, from the files beside it: same MP cells
            for extra in MEASURED_FILES:
                if (source.parent / extra).is_file() and source.name == "mp_gap.jsonl.gz":
                    for sid, found in find_in_data(structures, source.parent / extra).items():
                        references.setdefault(sid, {"mat_id": found["mat_id"]})
                        references[sid].update({k: v for k, v in found.items() if k not in references[sid]})
        elif args.labels != "auto":
            raise FileNotFoundError(f"--labels: {source or 'the shared mp_gap data'} not found")
    labelled = may_carry_labels(args.files)
    # a Δ-model the user did not ask for must not stop the demo table: its potential skips what it cannot take
    strain = args.strain_check or not args.files  # the built-in crystals: a handful, and the check is the point
    stream = dict(references=references, on_error=args.on_error, skipped=skipped, potential=args.potential,
                  potential_on_error=None if args.model else "skip", batch_size=args.batch_size,
                  workers=parallel.workers, strain_check=strain)
    bar = _progress_bar(args.quiet or not args.files, "predict")
    if fabric is not None:
        from matgl_cgat._parts import close

        try:
            return _predict_part(args, fabric, models, names, items, positions, stream, bar, skipped,
                                 table_columns(models, labelled, references is not None, strain))
        finally:
            close()
    if args.out:
        table = StreamingTable(args.out, table_columns(models, labelled, references is not None, strain),
                               signature={"models": names, "fidelity": args.fidelity, "strain_check": strain,
                                          "inputs": [str(Path(f).absolute()) for f in args.files]},
                               overwrite=args.overwrite)
        if table.resumed:
            print(f"mgl-cgat: resuming {table.partial}: {table.resumed} structures already predicted", file=sys.stderr)
            bar.update(table.resumed)
        todo = (item for item in items if item[0] not in table.done)
        for rows in predict_rows(models, todo, progress=bar.update, **stream):
            if table.store == "csv":
                table.write([flat_row(r, models) for r in rows], [])
            else:
                table.write([], [json_row(r, models) for r in rows])
        bar.close()
        if table.done:
            written = table.finish({n: units_of(m) for n, m in models.items()})
            print(f"wrote {written} predictions to {args.out}")
        else:  # nothing predicted: no empty table that a rerun would then refuse to overwrite
            table.discard()
            written = 0
    else:
        rows = [r for chunk in predict_rows(models, items, progress=bar.update, **stream) for r in chunk]
        bar.close()
        written = len(rows)
        if rows:
            print(format_rows(rows, models, args.format or "table"))
            if (args.format or "table") == "table":
                print(f"(stack: {stack_description()})")
    for where, why in skipped:
        print(f"mgl-cgat: skipped {where}: {why}", file=sys.stderr)
    if not written:
        print("mgl-cgat: error: nothing to predict: every input was skipped", file=sys.stderr)
        return 2
    if skipped:
        print(f"mgl-cgat: {len(skipped)} input(s) skipped, {written} predicted", file=sys.stderr)
    return 0


def _predict_part(args, fabric, models, names, items, positions, stream, bar, skipped, columns) -> int:
    """One process's part of a screen over several (:mod:`matgl_cgat._parts`); rank 0 merges.

    A process that fails (a bad structure with ``--on-error raise``, a missing potential) does not
    leave the others waiting: every process reports whether it failed before any waits for the merge,
    and all end with the one-line error."""
    import json

    import torch

    from matgl_cgat._parts import merge_parts, part_path, part_rows, signature_path
    from matgl_cgat._table_out import StreamingTable
    from matgl_cgat.predict import flat_row, json_row, predict_rows, units_of

    rank, world = fabric.global_rank, fabric.world_size
    signature = {"models": names, "fidelity": args.fidelity, "inputs": [str(Path(f).absolute()) for f in args.files],
                 "batch_size": args.batch_size, "strain_check": args.strain_check, "columns": columns, "part": [rank, world]}
    error = None
    try:
        for model in models.values():
            getattr(model, "model", model).to(fabric.device)
        part = part_path(args.out, rank, world)
        if part.is_file():  # finished before an interrupted merge: nothing left to predict, if it is ours
            try:
                made_by = json.loads(signature_path(part).read_text())
            except (OSError, ValueError):
                made_by = None
            if made_by != json.loads(json.dumps(signature)):
                raise ValueError(f"{part}: a finished part of another command (other models, inputs or options); "
                                 "delete it to start afresh")
        else:
            table = StreamingTable(part, ["id"], signature)
            todo = (item for item in items if item[0] not in table.done)
            for rows in predict_rows(models, todo, progress=bar.update, device=fabric.device, **stream):
                table.write([], part_rows(rows, positions, lambda r: flat_row(r, models),
                                          lambda r: json_row(r, models)))
            table.finish({})
            signature_path(part).write_text(json.dumps(signature))
    except Exception as exc:  # noqa: BLE001 - said (or re-raised) below, after the others have heard of it
        error = exc
    bar.close()
    for where, why in skipped:
        print(f"mgl-cgat: rank {rank}: skipped {where}: {why}", file=sys.stderr)
    failed = fabric.all_reduce(torch.tensor(float(error is not None)), reduce_op="sum")
    if float(failed) > 0:
        if error is not None and not isinstance(error, (ValueError, OSError)):
            raise error  # a fault of the program, not of the input: its traceback
        if error is not None:
            print(f"mgl-cgat: error: rank {rank}: {error}", file=sys.stderr)
        return 2
    written = 0
    if rank == 0:
        try:
            written = merge_parts(args.out, world, columns, {k: v for k, v in signature.items() if k != "part"},
                                  {n: units_of(m) for n, m in models.items()}, args.overwrite)
        except (ValueError, OSError) as exc:
            error = exc
        if error is None and written:
            print(f"wrote {written} predictions to {args.out} (merged from {world} processes)")
    failed = fabric.all_reduce(torch.tensor(float(error is not None or (rank == 0 and not written))), reduce_op="sum")
    if error is not None:
        print(f"mgl-cgat: error: {error}", file=sys.stderr)
    elif rank == 0 and not written:
        print("mgl-cgat: error: nothing to predict: every input was skipped", file=sys.stderr)
    return 2 if float(failed) > 0 else 0


def _parsed_items(items, on_error: str, skipped: list) -> list:
    """Every item with its structure parsed (JSON lines come unparsed, for the conversion processes);
    one that cannot be parsed raises, or is skipped with ``--on-error skip``."""
    from matgl_cgat.data import DataError
    from matgl_cgat.predict import parsed

    out = []
    for sid, structure, labels in items:
        try:
            out.append((sid, parsed(structure), labels))
        except DataError as exc:
            if on_error == "raise":
                raise
            skipped.append((sid, str(exc)))
    return out


def _parallelism(threads: int | None, workers: int | None, files: bool, quiet: bool):
    """Torch threads and conversion processes: as asked, else chosen from the cores free now
    (:func:`matgl_cgat._parallel.choose_parallelism`); one thread and no process for the built-in
    crystals, where starting processes costs more than it saves. Sets torch's threads."""
    import torch

    from matgl_cgat._parallel import Parallelism, choose_parallelism

    chosen = choose_parallelism() if files and (threads is None or workers is None) else Parallelism(1, 0, None)
    asked = threads is not None and workers is not None
    chosen = Parallelism(threads or chosen.threads, chosen.workers if workers is None else workers,
                         None if asked else chosen.free_cores)
    torch.set_num_threads(chosen.threads)
    if files and not quiet:
        print(f"mgl-cgat: predicting with {chosen.describe()}", file=sys.stderr)
    return chosen


#: How the CLI picks threads unless told (measured in benchmarks/screening_speed.py).
THREADS_NOTE = ("torch CPU threads (default: chosen from the cores free now: a thread waiting for a core that "
                "another job holds stalls the others; see benchmarks/RESULTS.md)")


def _progress_bar(disable: bool, what: str):
    """A tqdm bar on stderr counting structures, with their rate (stdout stays the table's)."""
    from tqdm.auto import tqdm

    return tqdm(desc=what, unit=" structures", file=sys.stderr, disable=disable, dynamic_ncols=True)


def _card_value(key: str, value) -> str:
    """One card entry as one readable line: long structures (element counts, stored predictions,
    reference energies, training stages) summarised, numbers rounded, nothing longer than a line."""
    if key == "domain" and isinstance(value, dict):  # 80-odd element counts: summarise
        lo, hi = value.get("volume_per_atom", (float("nan"), float("nan")))
        return (f"{value.get('n_structures')} training structures, {len(value.get('element_counts', {}))} elements, "
                f"volume per atom {lo:.1f}-{hi:.1f} A^3")
    if key == "test_predictions" and isinstance(value, dict):  # one number per test crystal
        return f"{len(value)} test crystals' predictions stored in the card"
    if key == "anchor" and isinstance(value, dict):  # 80-odd reference energies: summarise
        correction = value.get("correction") or {}
        return (f"adds its output to {value.get('potential')}: {len(value.get('references_eV_per_atom', {}))} elemental "
                "references" + (f", per-element correction on {len(correction.get('coefficients', {}))} elements"
                                if correction else "") + f"; {value.get('find_potential')}")
    if key == "stages" and isinstance(value, list):
        return f"{len(value)} training stages: " + "; ".join(str(st.get("what", "?")) for st in value if isinstance(st, dict))
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"{len(value)} entries (see model.json)"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()
                         if not isinstance(v, (dict, list)))
    return str(value)


def _models(args: argparse.Namespace) -> int:
    import json
    import shutil

    from matgl_cgat.pretrained import available_models

    models = available_models()
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    if args.name:  # one model's card as a two-column table
        match = {n.lower(): n for n in models}.get(args.name.lower())
        if match is None:
            from difflib import get_close_matches

            close = get_close_matches(args.name, list(models), n=3, cutoff=0.5)
            raise ValueError(f"no shipped model {args.name!r}" + (f"; did you mean {', '.join(close)}?" if close
                                                                    else f"; available: {', '.join(models)}"))
        card = json.loads((models[match] / "model.json").read_text()).get("metadata") or {}
        print(f"{match}  ({models[match]})")
        key_width = max(len(k) for k in card) if card else 0
        for key, value in card.items():
            text = _card_value(key, value)
            room = max(20, width - key_width - 4)
            print(f"  {key.ljust(key_width)}  {text if len(text) <= room else text[: room - 3] + '...'}")
        print("(the whole card: model.json in that folder)")
        return 0
    if not models:
        print("no shipped CGAT models in this installation")
        return 0
    rows = []
    for name, folder in models.items():
        card = json.loads((folder / "model.json").read_text()).get("metadata") or {}
        mae = card.get("test_mae")
        needs = (card.get("anchor") or {}).get("potential", "") if isinstance(card.get("anchor"), dict) else ""
        rows.append([name, str(card.get("property", "")), str(card.get("units", "")),
                     f"{mae:.3f}" if isinstance(mae, (int, float)) else "-", needs or "-"])
    headers = ["model", "property", "units", "test MAE", "needs at run time"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for line in [headers, *rows]:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
    print("(mgl-cgat models NAME: one model's card)")
    return 0


def _enthalpy(args: argparse.Namespace) -> int:
    """A universal potential's formation enthalpies (matgl_cgat.potentials), printed or written."""
    import json

    from matgl_cgat._io import atomic_write_text
    from matgl_cgat.data import default_data_dir
    from matgl_cgat.potentials import RelaxOptions, formation_enthalpies, load_potential
    from matgl_cgat.predict import example_structures, read_structure_files

    if args.out and args.out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: write .csv or .json")
    skipped: list = []
    structures = read_structure_files(args.files, args.on_error, skipped) if args.files else example_structures()
    relax = (RelaxOptions(args.optimizer, args.fmax, args.steps, not args.fixed_cell) if args.relax else None)
    if args.reference_data == "none":
        reference_data = None
    elif args.reference_data == "auto":
        folder = default_data_dir()
        reference_data = folder / "mp_gap.jsonl.gz" if folder is not None else None
    else:
        reference_data = Path(args.reference_data)
        if not reference_data.is_file():
            raise FileNotFoundError(f"--reference-data {reference_data}: no such file")
    source = load_potential(args.potential, batch_size=args.batch_size)
    result = formation_enthalpies(list(structures.values()), source, ids=list(structures), relax=relax,
                                  reference_data=reference_data, cache_dir=args.cache, on_error=args.on_error,
                                  progress=not args.quiet)
    from matgl_cgat.domain import formula_of

    rows = [{"id": rid, "formula": formula_of(structures[rid]),
             "e_form_eV_per_atom": None if rid in result.skipped else round(float(e), 5),
             "energy_eV": None if rid in result.skipped else round(float(t), 5)}
            for rid, e, t in zip(result.ids, result.e_form, result.energy)]
    kept = [r for r in rows if r["e_form_eV_per_atom"] is not None]
    if args.out and args.out.suffix.lower() == ".json":
        atomic_write_text(args.out, json.dumps({"potential": result.potential, "mode": result.mode,
                                                "references": result.references.origins, "rows": kept,
                                                "skipped": result.skipped}, indent=1))
    elif args.out:
        lines = ["id,formula,e_form_eV_per_atom,energy_eV"]
        lines += [f"{r['id']},{r['formula']},{r['e_form_eV_per_atom']},{r['energy_eV']}" for r in kept]
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    if args.out:
        print(f"wrote {len(kept)} formation enthalpies to {args.out}")
    else:
        width = max([len(r["id"]) for r in rows] + [4])
        print(f"{'id':{width}s}  {'formula':10s}  {'E_form (eV/atom)':>16s}")
        for r in kept:
            print(f"{r['id']:{width}s}  {r['formula']:10s}  {r['e_form_eV_per_atom']:16.4f}")
        print(f"({source.name}, {result.mode}; elemental references computed by the same potential)")
    for where, why in [*skipped, *result.skipped.items()]:
        print(f"mgl-cgat: skipped {where}: {why}", file=sys.stderr)
    return 0 if kept else 2


def _data_args(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    p.add_argument("--data", default=None, help="data file or folder (JSON lines, Alexandria, CIF+id_prop.csv, "
                   "extxyz); default: the shared mp_gap.jsonl.gz ($MATGL_CGAT_DATA or ../shared/data/mp_gap)")
    p.add_argument("--target", required=target_required, help="label to learn, e.g. gap_hse, e_form_pbe")
    p.add_argument("--splits", default=None, help="splits.json (default: the one beside --data; else a random "
                   "80/10/10 split)")
    p.add_argument("--split-key", default=None, help="entry of --splits to use (default: --target)")
    p.add_argument("--max-train", type=_positive_int(10**9), default=None, help="use a random subset of this many training structures")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "matgl_cgat" / "graphs"),
                   help="graph cache folder, keyed by data and converter settings (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int(1024), default=None, help="torch CPU threads (default: one per core free at the start: a thread waiting for "
                   "a core another job holds stalls the others)")


def _parts(args: argparse.Namespace, model=None, need: tuple[str, ...] = ("train",)):
    """Data and splits of ``--data``/``--target``; ``need``: the parts that must not be empty (checked
    before any training, with every part's size in the message)."""
    from matgl_cgat.data import prepare_splits

    import torch

    if args.threads is None:  # a thread that waits for a core another job holds stalls the others
        from matgl_cgat._parallel import training_threads

        args.threads = training_threads()
        print(f"torch threads: {args.threads} (from the cores free now; --threads to choose)", file=sys.stderr)
    torch.set_num_threads(args.threads)
    converter = model.graph_converter() if model is not None and hasattr(model, "graph_converter") else None
    parts = prepare_splits(args.target, args.data, splits=args.splits, split_key=args.split_key, seed=args.seed,
                           max_train=args.max_train, cache_dir=args.cache, converter=converter, need=need)
    n_val = len(parts.val) if parts.val is not None else "none"
    print(f"{parts.source}: {args.target}, {parts.split}: train {len(parts.train)}, val {n_val}, "
          f"test {len(parts.test)}; {parts.skipped} records skipped (no {args.target} label or unusable)")
    return parts


class _RecipeNames:
    """The recipes' names, read only when argparse checks a --recipe or prints help: importing
    ``matgl_cgat.training`` imports Lightning (2 s), which ``predict`` never needs."""

    def _names(self) -> list[str]:
        from matgl_cgat.training import RECIPES

        return sorted(RECIPES)

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _train_args(p: argparse.ArgumentParser, default_recipe: str) -> None:
    p.add_argument("--recipe", default=default_recipe, choices=_RecipeNames(), metavar="RECIPE",
                   help="named training settings the options below override (default: %(default)s; an unknown name "
                   "lists them)")
    p.add_argument("--epochs", type=_positive_int(10**9), default=None, help="epochs (default: the recipe's)")
    p.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate of the triangular cycle "
                   "(default: the recipe's)")
    p.add_argument("--period", type=_positive_int(10**9), default=None, help="cycle length in epochs (default: --epochs, one cycle)")
    p.add_argument("--batch-size", type=_positive_int(100_000), default=None, help="structures per batch and process")
    p.add_argument("--loss", default=None, choices=["l1", "huber", "mse"], help="training loss on normalised "
                   "targets (default: l1; huber when many labels sit at one value, e.g. hull distances)")
    p.add_argument("--huber-delta", type=_positive_float, default=None, help="Huber threshold in target std units")
    p.add_argument("--output-min", default="auto", help="lower bound of the model's predictions, e.g. 0 for a "
                   "non-negative property; 'none' for unbounded (default: auto, the source model's bound if the "
                   "new labels respect it)")
    p.add_argument("--average-last", type=_positive_int(10**9), default=None, metavar="N", help="return the mean of the weights "
                   "of the last N epochs instead of the best epoch's (weight averaging)")
    p.add_argument("--calibrate-offset", action="store_true", help="after training, shift the output by the "
                   "constant that minimises the validation MAE (for huber/mse fits of targets piled up at a bound)")
    p.add_argument("--accelerator", default=None, help="Lightning accelerator: auto (default), cpu, gpu, ...")
    p.add_argument("--devices", default=None, help="devices (processes) per node: auto (default), 1, 2, ...")
    p.add_argument("--num-nodes", type=_positive_int(100_000), default=None, help="machines (default 1)")
    p.add_argument("--strategy", default=None, help="Lightning strategy: auto (default), ddp, ...")
    p.add_argument("--precision", default=None, help="32-true (default) or bf16-mixed (bfloat16 autocast)")
    p.add_argument("--workers", type=_count(1024), default=None, help="data-loader worker processes per training process")
    p.add_argument("--overwrite", action="store_true", help="discard a previous run in --out instead of resuming")
    p.add_argument("--name", default=None, help="the model's name in its card and in predict's columns (default: "
                   "the --out folder's name and the target, e.g. myrun-e_form_exp)")
    p.add_argument("--out", type=Path, required=True, help="run folder: model/, run/metrics.csv, test_metrics.json, "
                   "test_predictions.csv, training_curve.png, parity.png (an interrupted run resumes here)")


_CONFIG_OPTIONS = {"epochs": "epochs", "lr": "lr", "period": "period", "batch_size": "batch_size", "loss": "loss",
                   "huber_delta": "huber_delta", "average_last": "average_last", "accelerator": "accelerator",
                   "num_nodes": "num_nodes", "strategy": "strategy", "precision": "precision",
                   "workers": "num_workers", "seed": "seed"}


def _train_config(args: argparse.Namespace):
    """The recipe with every option the user gave applied."""
    from matgl_cgat.training import recipe

    changes = {field: getattr(args, opt) for opt, field in _CONFIG_OPTIONS.items() if getattr(args, opt, None) is not None}
    if args.devices is not None:
        changes["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    return recipe(args.recipe, **changes)


def _loss_kwargs(args: argparse.Namespace) -> dict:
    bound = args.output_min.strip().lower()
    if bound not in ("auto", "none"):
        try:
            bound = float(bound)
        except ValueError:
            raise ValueError(f"--output-min must be a number, 'none' or 'auto', got {args.output_min!r}") from None
    return {"output_min": None if bound == "none" else bound, "calibrate": args.calibrate_offset,
            "config": _train_config(args), "overwrite": args.overwrite}


def _report(trained, metrics: dict | None, out: Path) -> None:
    """The end of a run: its best epoch (validation MAE), the test metrics with units, where it is."""
    if metrics is None:  # a rank other than 0 of a multi-process run: rank 0 reports and saves
        return
    card = trained.metadata if isinstance(getattr(trained, "metadata", None), dict) else {}
    units = card.get("units", "")
    unit = f" {units}" if units else ""
    training = card.get("training") or {}
    if training.get("weight_average"):  # saved instead of the best epoch's weights
        print(f"saved the mean of the weights of epochs {training['weight_average'].get('epochs')}")
    elif training.get("best_epoch") is not None:
        print(f"best epoch: {training['best_epoch']} (validation MAE {training['best_val_mae']:.4g}{unit}), the "
              "weights saved")
    shown = []
    for k, v in metrics.items():
        if not isinstance(v, float):
            shown.append(f"{k} {v}")
        elif k.lower() in ("r2", "spearman", "pearson") or "rate" in k or "fraction" in k or "coverage" in k:
            shown.append(f"{k} {v:.4g}")
        else:
            shown.append(f"{k} {v:.4g}{unit}")
    print("test: " + ", ".join(shown))
    print(f"saved the model {card.get('name', '')} ({card.get('property', '')}, {units or 'no units given'}) to "
          f"{out / 'model'} (load with matgl.load_model); plots and metrics in {out}")


def _run_name(args: argparse.Namespace) -> str:
    """The saved model's name (its card, and its column in ``predict``): ``--name``, else the run folder's
    name with the property it learnt, so two runs on different labels never share a name."""
    if args.name:
        return args.name
    base = args.out.name
    return base if args.target.lower() in base.lower() else f"{base}-{args.target}"


def _train(args: argparse.Namespace) -> int:
    from matgl_cgat import CGAT
    from matgl_cgat.workflows import train

    fit_kw = _loss_kwargs(args)  # bad options fail before any data is read
    import torch

    torch.manual_seed(args.seed)  # the starting weights follow --seed (and a resumed run finds the same ones)
    model = CGAT.from_preset(args.preset)
    parts = _parts(args, model, need=("train", "val", "test"))
    card = {"name": _run_name(args), "preset": args.preset, "parent": None, "units": args.units}
    model.metadata = {"units": args.units}  # the progress bar's units; the card replaces it when saved
    trained, metrics = train(model, parts, args.target, args.out, policy="full", renormalize=True, card=card, **fit_kw)
    _report(trained, metrics, args.out)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from matgl_cgat.workflows import train

    fit_kw = _loss_kwargs(args)
    parent = _load_model(args.model)
    parent_card = parent.metadata if isinstance(getattr(parent, "metadata", None), dict) else {}
    policy, renormalize = args.policy or "full", not args.keep_normalization
    if args.add_fidelity:  # checked before any data is read
        policy = f"fidelity:{args.add_fidelity}"
        if args.policy and args.policy.lower() != policy.lower():
            raise ValueError(f"--add-fidelity {args.add_fidelity} trains the new fidelity alone (policy {policy}); "
                             f"--policy {args.policy} cannot go with it. To train more weights, fine-tune the "
                             "grown model on every fidelity's labels (examples/train_multifidelity.py)")
        if not getattr(parent, "fidelities", None):
            raise ValueError(f"--add-fidelity {args.add_fidelity}: {args.model} is not a multi-fidelity model (make one "
                             "with matgl_cgat.transfer.multi_fidelity_from, or use examples/train_multifidelity.py)")
        if args.start_from:
            parent.fidelity_index(args.start_from)  # an unknown name is an error naming the model's fidelities
    elif args.start_from:
        raise ValueError("--start-from goes with --add-fidelity")
    parts = _parts(args, parent, need=("train", "val", "test"))
    card = {"name": _run_name(args), "preset": parent_card.get("preset"), "parent": parent_card.get("name", args.model),
            "units": args.units or parent_card.get("units", "")}
    if args.add_fidelity:
        parent, renormalize = _with_new_fidelity(parent, args, parts.train), False
    if args.units and isinstance(parent.metadata, dict):  # the progress bar's units (this process's copy only)
        parent.metadata = {**parent.metadata, "units": args.units}
    trained, metrics = train(parent, parts, args.target, args.out, policy=policy, renormalize=renormalize, card=card,
                             **fit_kw)
    _report(trained, metrics, args.out)
    return 0


def _with_new_fidelity(parent, args: argparse.Namespace, train_set):
    """``parent`` (a multi-fidelity model) with one more fidelity, ``--add-fidelity``, whose labels are
    ``--target``: its normalisation from the training labels, its conditioning copied from
    ``--start-from`` (default: the shared prediction)."""
    import numpy as np

    from matgl_cgat.transfer import add_fidelity

    y = np.asarray(train_set.labels[args.target], dtype=float)
    y = y[np.isfinite(y)]
    if len(np.unique(y)) < 2:
        raise ValueError(f"--add-fidelity {args.add_fidelity}: the training split has {len(y)} label(s) of {args.target!r} "
                         f"with {len(np.unique(y))} distinct value(s); the new fidelity's mean and std need at least 2")
    return add_fidelity(parent, args.add_fidelity, float(y.mean()), float(y.std()), start_from=args.start_from,
                        label_column=args.target)


def _property_mismatch(model, spec: str, target: str) -> str | None:
    """The property the model's card says it predicts (None without a card); a warning on stderr when
    it is not ``target``.

    A warning and not an error: scoring a model on a neighbouring property is a legitimate baseline
    (a PBE-gap model on HSE gaps is the zero-shot point of every transfer study), so refusing would
    only add a flag to routine work; but metrics of a gap model on formation energies are meaningless,
    so the mismatch is said on stderr and recorded as ``model_property`` in the JSON output.
    """
    card = model.metadata if isinstance(getattr(model, "metadata", None), dict) else {}
    prop = card.get("property")
    if getattr(model, "fidelities", None) or getattr(model, "ntargets", 1) > 1:
        from matgl_cgat.workflows import output_column

        output_column(model, target)  # several outputs: one must predict target (an error names them otherwise)
        return prop
    if prop and prop != target:
        name = card.get("name") or Path(spec).name
        units = f" ({card['units']})" if card.get("units") else ""
        print(f"mgl-cgat: warning: {name} predicts {prop}{units}; you evaluate it on {target}: the metrics "
              "compare two different properties", file=sys.stderr)
    return prop


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from matgl_cgat.workflows import evaluate

    if args.out is not None:  # refused before any work: a training run's own test files are the user's
        existing = [n for n in ("test_metrics.json", "test_predictions.csv", "parity.png") if (args.out / n).exists()]
        if existing and not args.overwrite:
            raise ValueError(f"--out {args.out}: already holds {', '.join(existing)} (a training run's test results?); "
                             "choose another folder or pass --overwrite")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out}: not a folder")
    model = _load_model(args.model)
    parts = _parts(args, model, need=(args.split,))
    dataset = parts[args.split]
    if dataset is None:
        raise ValueError(f"{parts.source}: {parts.split} has no {args.split} split; choose --split train or test")
    model_property = _property_mismatch(model, args.model, args.target)
    units = (model.metadata or {}).get("units", "") if isinstance(getattr(model, "metadata", None), dict) else ""
    metrics = evaluate(model, dataset, args.target, args.out, batch_size=args.batch_size, title=f"{Path(args.model).name} on {args.target} "
                       f"({args.split}, {len(dataset)})", units=units)
    print(json.dumps({"model": args.model, "model_property": model_property, "target": args.target,
                      "split": args.split, **metrics}, indent=2))
    if args.out:
        print(f"wrote test_metrics.json, test_predictions.csv and parity.png to {args.out}")
    return 0


def _scaling_run(args: argparse.Namespace) -> int:
    from matgl_cgat.scaling import run_learning_curve

    parent = None
    if args.parent:
        parent = _load_model(args.parent)
    parts = _parts(args, parent)
    rows = run_learning_curve(parts.train, parts.val, parts.test, target=args.target, sizes=args.sizes,
                              out_dir=args.out, strategies=args.strategies, seeds=args.seeds, parent=parent,
                              preset=args.preset, epochs=args.epochs, lr_scratch=args.lr_scratch,
                              lr_transfer=args.lr_transfer, batch_size=args.batch_size)
    print(f"{len(rows)} runs in {args.out / 'results.csv'}")
    return _scaling_report(rows, args.out, args.metric, args.target)


def _scaling_fit(args: argparse.Namespace) -> int:
    from matgl_cgat.scaling import load_results

    rows = load_results(args.results)
    out = args.out or (args.results if Path(args.results).is_dir() else Path(args.results).parent)
    return _scaling_report(rows, Path(out), args.metric, rows[0].get("target", "") if rows else "", args.target_mae)


def _scaling_report(rows: list[dict], out: Path, metric: str, target: str, target_mae: float | None = None) -> int:
    import json

    from matgl_cgat.plots import plot_scaling
    from matgl_cgat.scaling import data_equivalents, fit_results, summarize

    if not rows:
        raise ValueError("no learning-curve rows to fit")
    print(f"\n{'strategy':>10s} {'size':>7s} {'seeds':>5s} {metric:>12s}")
    for s in summarize(rows, metric):
        print(f"{s['strategy']:>10s} {s['size']:7d} {s['n_seeds']:5d} {s['mean']:8.4f} +/- {s['std']:.4f}")
    fits = fit_results(rows, metric)
    report: dict = {"metric": metric, "fits": {k: f.to_dict() for k, f in fits.items()}, "data_equivalent": {}}
    print()
    for name, fit in fits.items():
        print(f"{name:>10s}: {fit}  (R^2 on log-log {fit.r2_log:.3f})")
        if target_mae:
            try:
                need = fit.size_for(target_mae, ci=0.68)
                report.setdefault("size_for_target", {})[name] = need
                print(f"{'':>12s}reaches {metric} {target_mae:g} at N ~ {need[0]:.0f} (68% CI {need[1]:.0f}-{need[2]:.0f})")
            except ValueError as exc:
                print(f"{'':>12s}{exc}")
    for name, eq in data_equivalents(fits, "scratch", ci=0.68).items():
        if "error" in eq:
            print(f"data-equivalent size for {name}: {eq['error']}")
            continue
        report["data_equivalent"][name] = {"size": eq["size"], "scratch_needs": eq["needs"], "ci68": eq["ci"]}
        print(f"no transfer needs ~{eq['needs']:.0f} structures (68% CI {eq['ci'][0]:.0f}-{eq['ci'][1]:.0f}) to match "
              f"{name} with {eq['size']:.0f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "fits.json").write_text(json.dumps(report, indent=2))
    plot_scaling(rows, out / "scaling.png", fits=fits, title=target, ylabel=metric.replace("_", " "))
    print(f"wrote {out / 'fits.json'} and {out / 'scaling.png'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import json

    from matgl_cgat.plots import plot_budget
    from matgl_cgat.scaling import PowerLawFit, fit_results, load_results, plan_budget

    def curve(results, strategy, explicit, what):
        if explicit:
            return PowerLawFit.from_params(*explicit)
        if results is None:
            return None
        fits = fit_results(load_results(results), args.metric)
        if strategy not in fits:
            raise ValueError(f"{results}: no fit for strategy {strategy!r} ({what}); fitted: {sorted(fits)}")
        return fits[strategy]

    train_fit = curve(args.train_results, args.train_strategy, args.train_fit, "training-size curve")
    if train_fit is None:
        raise ValueError("give the training-size curve: --train-results DIR or --train-fit A B")
    pre_fit = curve(args.pretrain_results, args.pretrain_strategy, args.pretrain_fit, "pre-training-size curve")
    plan = plan_budget(pre_fit, train_fit, args.n_pretrain, args.n_train, args.cost_ratio, args.budgets)
    print(plan.table())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2))
        plot_budget(plan.rows, args.out / "plan.png", title=f"expensive = {args.cost_ratio:g} x cheap")
        print(f"wrote {args.out / 'plan.json'} and {args.out / 'plan.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgl-cgat", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mgl-cgat {__version__} ({stack_description()})")
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="train a small CGAT on shared PBE formation energies, save, reload, predict")
    q.add_argument("--data", default=None, help="folder with mp_gap.jsonl.gz and splits.json "
                   "(default: $MATGL_CGAT_DATA or ../shared/data/mp_gap)")
    q.add_argument("--out", default="cgat_quickstart", help="output folder (default: %(default)s)")
    q.add_argument("--n-train", type=_positive_int(10**9), default=2000)
    q.add_argument("--n-val", type=_positive_int(10**9), default=250)
    q.add_argument("--n-test", type=_positive_int(10**9), default=500)
    q.add_argument("--epochs", type=_positive_int(10**9), default=10)
    q.add_argument("--batch-size", type=_positive_int(100_000), default=64)
    q.add_argument("--preset", default="small")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_quickstart)

    p = sub.add_parser("predict", help="predict structures with the shipped (or given) CGAT models")
    p.add_argument("files", nargs="*", help="CIF, POSCAR/CONTCAR/.vasp, (ext)XYZ, JSON, JSON-lines (.jsonl[.gz], "
                   "as load_dataset reads) or Alexandria (.json.bz2) files, or folders of CIFs "
                   "(default: NaCl, Si, GaAs, SrTiO3 and Cu built in memory)")
    p.add_argument("--model", action="append", help="model name (CGAT-...) or saved model folder; repeatable "
                   "(default: every shipped model)")
    p.add_argument("--out", type=Path, help="write .csv, .jsonl, .json or .parquet instead of printing a table; "
                   "rows are written as they are predicted, and an interrupted run resumes where it stopped")
    p.add_argument("--format", choices=["table", "csv", "json"], help="format when printing")
    p.add_argument("--fidelity", default=None, help="for multi-fidelity models: the functional to predict (e.g. "
                   "hse); default: every fidelity, one column each")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="an unreadable file or impossible structure: stop with its name (raise, default) or "
                   "leave it out and list it at the end (skip)")
    p.add_argument("--labels", default="auto", help="show beside each prediction the DFT value of the same "
                   "crystal in a JSON-lines data file: a path, 'mp_gap' (the shared data), 'none', or 'auto' "
                   "(default: the shared data for the built-in crystals, when it is there)")
    p.add_argument("--potential", default=None, help="for models that add their output to a universal potential "
                   "(their card's 'anchor'): the potential's folder, when it is not in MatGL's cache")
    p.add_argument("--batch-size", type=_positive_int(100_000), default=128, help="structures per batch "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=_positive_int(1024), default=None, help=THREADS_NOTE)
    p.add_argument("--workers", type=_count(1024), default=None, help="processes that convert structures while "
                   "the networks run (default: chosen with --threads from the cores free now)")
    p.add_argument("--strain-check", action="store_true", help="probe every crystal under 1%% strains: a column "
                   "with the largest change of each answer, added to its sigma and flagged where it exceeds the "
                   "model's MAE (a crystal near a neighbour-shell boundary; docs/results.md 12.2); always on for the "
                   "built-in crystals")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--accelerator", default=None, help="with several processes: Lightning accelerator (cpu, gpu, "
                   "auto; default cpu)")
    p.add_argument("--devices", default=None, help="processes (CPU) or GPUs per node for a screen over several "
                   "processes: each writes a part of --out, merged in input order")
    p.add_argument("--num-nodes", type=_positive_int(100_000), default=None, help="machines (e.g. under SLURM)")
    p.add_argument("--strategy", default=None, help="Lightning strategy (default: auto, ddp for several processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)

    h = sub.add_parser("enthalpy", help="formation enthalpies from a universal potential (its own elemental "
                       "references; static or relaxed; cached, resumable)")
    h.add_argument("files", nargs="*", help="structure files as for predict (default: the built-in crystals)")
    h.add_argument("--potential", required=True, help="a MatGL potential: name in MatGL's cache (e.g. "
                   "M3GNet-MatPES-r2SCAN-v2025.1-PES) or its folder; or a potential whose pip wheel ships its "
                   "weights: chgnet:r2scan, chgnet:0.3.0, sevenn:7net-mf-0:r2scan, ... (the [potentials] extra)")
    h.add_argument("--relax", action="store_true", help="relax each structure first (default: static energy "
                   "on the given cell)")
    h.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"])
    h.add_argument("--fmax", type=_positive_float, default=0.05, help="force tolerance, eV/A (default: %(default)s)")
    h.add_argument("--steps", type=_positive_int(10**9), default=500, help="most optimiser steps (default: %(default)s)")
    h.add_argument("--fixed-cell", action="store_true", help="with --relax: keep the cell, move atoms only")
    h.add_argument("--reference-data", default="auto", help="JSON-lines file whose elemental crystals are "
                   "reference candidates too: a path, 'none', or 'auto' (the shared mp_gap.jsonl.gz when present)")
    h.add_argument("--cache", type=Path, default=None, help="energy cache folder (default: $MATGL_CGAT_CACHE or "
                   "~/.cache/matgl_cgat, then potentials/)")
    h.add_argument("--batch-size", type=_positive_int(100_000), default=16)
    h.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    h.add_argument("--out", type=Path, help="write .csv or .json instead of printing")
    h.add_argument("--quiet", action="store_true", help="no progress bars")
    h.set_defaults(func=_enthalpy)

    m = sub.add_parser("models", help="list the shipped models; with a NAME, that model's card")
    m.add_argument("name", nargs="?", default=None, help="a shipped model's name (any case)")
    m.set_defaults(func=_models)

    t = sub.add_parser("train", help="train a CGAT from scratch on one property (one triangular LR cycle)")
    _data_args(t)
    t.add_argument("--preset", default="small", help="architecture: small (1.7 M parameters) or paper (55.9 M)")
    t.add_argument("--units", default="", help="units of the target, for the model card and plots")
    _train_args(t, "cpu")
    t.set_defaults(func=_train)

    f = sub.add_parser("finetune", help="fine-tune a trained CGAT (shipped name or folder) on new labels")
    f.add_argument("--model", required=True, help="source model: CGAT-... name or saved model folder")
    _data_args(f)
    f.add_argument("--policy", default=None, help="freeze policy: full, head, readout+head, last:K, "
                   "frozen-embeddings, fidelity:NAME (default: full; fidelity:NAME with --add-fidelity NAME)")
    f.add_argument("--add-fidelity", default=None, metavar="NAME", help="multi-fidelity models: add the functional "
                   "NAME, whose labels are --target; only its own scale and shift train (policy fidelity:NAME), so "
                   "the other fidelities' predictions cannot change")
    f.add_argument("--start-from", default=None, metavar="FIDELITY", help="with --add-fidelity: start NAME from this "
                   "fidelity's conditioning (e.g. hse for SCAN gaps)")
    f.add_argument("--keep-normalization", action="store_true", help="keep the source model's target mean/std "
                   "instead of re-fitting them on the new training data")
    f.add_argument("--units", default="", help="units of the target (default: the source model's)")
    _train_args(f, "cpu-finetune")
    f.set_defaults(func=_finetune)

    e = sub.add_parser("evaluate", help="metrics (MAE, RMSE, R^2, metal/stability scores), predictions and a "
                       "parity plot of a model on a labelled split")
    e.add_argument("--model", required=True, help="CGAT-... name or saved model folder")
    _data_args(e)
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--batch-size", type=_positive_int(100_000), default=128, help="structures per prediction batch")
    e.add_argument("--out", type=Path, default=None, help="folder for test_metrics.json, test_predictions.csv, "
                   "parity.png")
    e.add_argument("--overwrite", action="store_true", help="replace those files where --out has them")
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("scaling", help="learning curves and log-log power-law fits")
    ssub = s.add_subparsers(dest="scaling_command", required=True)
    sr = ssub.add_parser("run", help="train sizes x strategies x seeds (resumable), test on one fixed set, fit")
    _data_args(sr)
    sr.add_argument("--parent", default=None, help="pre-trained model for the transfer strategies")
    sr.add_argument("--sizes", type=_count(10**9), nargs="+", required=True, help="training sizes (0: the whole split)")
    sr.add_argument("--strategies", nargs="+", default=["scratch", "head", "full"],
                    help="scratch and/or freeze policies of the parent (default: %(default)s)")
    sr.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sr.add_argument("--preset", default="small", help="architecture of scratch runs without --parent")
    sr.add_argument("--epochs", type=_positive_int(10**9), default=None, help="epochs per run (default: the cpu-transfer recipe's)")
    sr.add_argument("--lr-scratch", type=_positive_float, default=None, help="peak lr from scratch (default: the cpu recipe's)")
    sr.add_argument("--lr-transfer", type=_positive_float, default=None, help="peak lr with transfer (default: the "
                    "cpu-transfer recipe's)")
    sr.add_argument("--batch-size", type=_positive_int(100_000), default=None)
    sr.add_argument("--metric", default="test_mae")
    sr.add_argument("--out", type=Path, required=True, help="study folder: config.json, results.csv/json, runs/, "
                    "fits.json, scaling.png")
    sr.set_defaults(func=_scaling_run)
    sf = ssub.add_parser("fit", help="fit MAE = a N^-b per strategy to finished runs; data-equivalent sizes")
    sf.add_argument("results", help="study folder, results.json or results.csv")
    sf.add_argument("--metric", default="test_mae", help="column to fit (e.g. test_mae, test_rmse, "
                    "test_mae_nonmetals)")
    sf.add_argument("--target-mae", type=_positive_float, default=None, help="also report the size each strategy needs for "
                    "this error")
    sf.add_argument("--out", type=Path, default=None, help="folder for fits.json and scaling.png (default: beside "
                    "the results)")
    sf.set_defaults(func=_scaling_fit)

    pl = sub.add_parser("plan", help="spend extra compute on cheap (pre-training) or expensive (training) labels?")
    pl.add_argument("--train-results", default=None, help="learning-curve study of the training (expensive) size")
    pl.add_argument("--train-strategy", default="full")
    pl.add_argument("--train-fit", type=_positive_float, nargs=2, metavar=("A", "B"), help="or the fit MAE = A N^-B directly")
    pl.add_argument("--pretrain-results", default=None, help="study whose sizes are pre-training (cheap) sizes")
    pl.add_argument("--pretrain-strategy", default="full")
    pl.add_argument("--pretrain-fit", type=_positive_float, nargs=2, metavar=("A", "B"))
    pl.add_argument("--metric", default="test_mae")
    pl.add_argument("--n-train", type=_positive_float, required=True, help="current number of expensive structures")
    pl.add_argument("--n-pretrain", type=_finite_float(0.0), default=0, help="current number of cheap structures")
    pl.add_argument("--cost-ratio", type=_positive_float, required=True, help="cost of one expensive calculation in cheap "
                    "ones, e.g. 5 for SCAN vs PBE")
    pl.add_argument("--budgets", type=_finite_float(0.0), nargs="+", default=[1000, 3000, 10000, 30000, 100000],
                    help="extra compute in cheap-calculation units")
    pl.add_argument("--out", type=Path, default=None, help="folder for plan.json and plan.png")
    pl.set_defaults(func=_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # DataError is a ValueError: one clear line, no traceback
        print(f"mgl-cgat: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permission denied, is a folder, not a folder, disk full: the file and the reason
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"mgl-cgat: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mgl-cgat: interrupted (a predict --out or a training run resumes where it stopped when run again)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
