"""Training/inference throughput and peak memory of CGAT versus MatGL's M3GNet and MEGNet.

Why: CGAT is meant to be a practical alternative to M3GNet/MEGNet, so its cost per structure
has to be measured on equal terms: the same 2,000 real structures (the first ids of the
``e_form_pbe`` training split of ``shared/data/mp_gap``, in ``splits.json`` order), the same batch
size (64), the same loss (L1 on formation energy), the same optimiser (AdamW) and the same number
of CPU threads (2).

How: every model is measured in a fresh subprocess of this script (``--worker MODEL``) so that
the peak resident memory (``ru_maxrss``) belongs to that model alone. A worker

1. streams the gzip JSON-lines file and keeps only the needed records,
2. converts all structures to graphs with the model's own converter (timed, reported apart),
3. trains one warm-up batch (not timed), then times forward + backward + optimiser step over
   ``--max-batches`` batches (default: one full epoch),
4. times inference (``model.eval()``, ``torch.no_grad()``) over the same batches,

and prints one JSON object on the last line of its stdout. The parent gathers these, writes the
combined JSON to ``--out`` and prints a Markdown table. A worker that fails (for example because a
model cannot be imported yet) is reported with its error and the other models still run.

Throughput counts collation (``dgl.batch`` in the data loader) but not graph construction.
Memory: ``rss_before_train_mb`` is the resident set just before training (graphs built),
``peak_rss_mb`` the subprocess's lifetime peak, ``peak_minus_baseline_mb`` their difference.

Run from the repository root (the full run takes a while: use a quiet machine)::

    DGLBACKEND=pytorch python benchmarks/speed.py \
        --models m3gnet megnet cgat-small cgat-paper --n 2000 --batch-size 64 \
        --out benchmarks/speed_results.json

Quick smoke test::

    DGLBACKEND=pytorch python benchmarks/speed.py --models m3gnet megnet \
        --n 128 --max-batches 2 --out /tmp/speed_smoke.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import itertools
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("DGLBACKEND", "pytorch")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "mp_gap" / "mp_gap.jsonl.gz"
DEFAULT_OUT = Path(__file__).resolve().parent / "speed_results.json"
DEFAULT_MODELS = ("m3gnet", "megnet", "cgat-small", "cgat-paper")
SPLIT_KEY = "e_form_pbe"
LABEL_KEY = "e_form"
MAT_ID_RE = re.compile(r'"mat_id"\s*:\s*"([^"]+)"')


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def benchmark_ids(splits_path: Path, n: int) -> list[str]:
    """Return the first ``n`` ids of the ``e_form_pbe`` training split, in file order."""
    with open(splits_path) as fh:
        splits = json.load(fh)
    train_ids = splits[SPLIT_KEY]["train"]
    if len(train_ids) < n:
        raise ValueError(f"only {len(train_ids)} training ids in {splits_path}, asked for {n}")
    return list(train_ids[:n])


def read_records(data_path: Path, wanted: Sequence[str]) -> list[dict[str, Any]]:
    """Stream ``data_path`` and return the records whose ``mat_id`` is in ``wanted``, in that order.

    Lines whose id is not wanted are skipped without a full JSON parse, and reading stops as soon
    as every wanted record has been seen.
    """
    remaining = set(wanted)
    found: dict[str, dict[str, Any]] = {}
    with gzip.open(data_path, "rt") as fh:
        for line in fh:
            match = MAT_ID_RE.search(line[:200])
            mat_id = match.group(1) if match else json.loads(line)["mat_id"]
            if mat_id not in remaining:
                continue
            found[mat_id] = json.loads(line)
            remaining.discard(mat_id)
            if not remaining:
                break
    if remaining:
        raise KeyError(f"{len(remaining)} ids missing from {data_path}, e.g. {sorted(remaining)[:3]}")
    return [found[mat_id] for mat_id in wanted]


def load_structures(data_path: Path, splits_path: Path, n: int) -> tuple[list[Any], list[float]]:
    """Return the benchmark's pymatgen structures and their PBE formation energies (eV/atom)."""
    from pymatgen.core import Structure

    records = read_records(data_path, benchmark_ids(splits_path, n))
    structures = [Structure.from_dict(r["structure"]) for r in records]
    labels = [float(r[SPLIT_KEY]) for r in records]
    return structures, labels


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """How to build one benchmarked model and its graph converter."""

    build_converter: Callable[[tuple[str, ...]], Any]
    build_model: Callable[[tuple[str, ...]], Any]
    include_line_graph: bool = False
    threebody_cutoff: float | None = None
    pass_state_attr: bool = True


def _m3gnet_converter(elements: tuple[str, ...]) -> Any:
    from matgl.ext.pymatgen import Structure2Graph

    return Structure2Graph(element_types=elements, cutoff=5.0)


def _m3gnet_model(elements: tuple[str, ...]) -> Any:
    from matgl.models import M3GNet

    return M3GNet(element_types=elements, is_intensive=True, readout_type="set2set", cutoff=5.0, threebody_cutoff=4.0)


def _megnet_converter(elements: tuple[str, ...]) -> Any:
    from matgl.ext.pymatgen import Structure2Graph

    return Structure2Graph(element_types=elements, cutoff=4.0)


def _megnet_model(elements: tuple[str, ...]) -> Any:
    from matgl.models import MEGNet

    return MEGNet(element_types=elements, cutoff=4.0)


def _cgat_converter(elements: tuple[str, ...]) -> Any:
    from matgl_cgat import CGATGraphConverter

    return CGATGraphConverter()


def _cgat_model(preset: str, elements: tuple[str, ...]) -> Any:
    from matgl_cgat import CGAT

    return CGAT.from_preset(preset)


MODEL_SPECS: dict[str, ModelSpec] = {
    "m3gnet": ModelSpec(_m3gnet_converter, _m3gnet_model, include_line_graph=True, threebody_cutoff=4.0),
    "megnet": ModelSpec(_megnet_converter, _megnet_model),
    "cgat-small": ModelSpec(_cgat_converter, partial(_cgat_model, "small"), pass_state_attr=False),
    "cgat-paper": ModelSpec(_cgat_converter, partial(_cgat_model, "paper"), pass_state_attr=False),
}


# --------------------------------------------------------------------------------------------
# Graphs and batches
# --------------------------------------------------------------------------------------------


def build_dataset(converter: Any, spec: ModelSpec, structures: list[Any], labels: list[float], cache_dir: str) -> Any:
    """Convert every structure with ``converter`` into an in-memory ``MGLDataset``.

    ``cache_dir`` must be a fresh directory: ``MGLDataset`` silently reloads any processed cache it
    finds under its ``save_dir``, even with ``save_cache=False``.
    """
    from matgl.graph.data import MGLDataset

    return MGLDataset(
        structures=structures,
        labels={LABEL_KEY: labels},
        converter=converter,
        include_line_graph=spec.include_line_graph,
        threebody_cutoff=spec.threebody_cutoff,
        save_cache=False,
        clear_processed=True,
        raw_dir=cache_dir,
        save_dir=cache_dir,
    )


def make_loader(dataset: Any, spec: ModelSpec, batch_size: int) -> Any:
    """Deterministic (unshuffled) loader using MatGL's ``collate_fn_graph``.

    ``MGLDataLoader`` always shuffles its training loader; timing train and inference on the same
    batches needs a fixed order, so the underlying ``GraphDataLoader`` is used directly.
    """
    from dgl.dataloading import GraphDataLoader
    from matgl.graph.data import collate_fn_graph

    collate = partial(collate_fn_graph, include_line_graph=spec.include_line_graph)
    return GraphDataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)


def graph_stats(dataset: Any, spec: ModelSpec) -> dict[str, float]:
    """Mean atoms, edges (and three-body line-graph edges) per structure."""
    n = len(dataset.graphs)
    stats = {
        "mean_atoms": sum(g.num_nodes() for g in dataset.graphs) / n,
        "mean_edges": sum(g.num_edges() for g in dataset.graphs) / n,
    }
    if spec.include_line_graph:
        stats["mean_line_graph_edges"] = sum(lg.num_edges() for lg in dataset.line_graphs) / n
    return stats


def _unpack(batch: tuple, spec: ModelSpec) -> tuple[Any, Any, Any, Any, Any]:
    """Split a collated batch into (graph, lattice, line graph or None, state_attr, labels)."""
    if spec.include_line_graph:
        return batch
    g, lat, state_attr, labels = batch
    return g, lat, None, state_attr, labels


def _set_geometry(g: Any, lat: Any) -> None:
    """Per-edge lattice, periodic shift and Cartesian positions, as ModelLightningModule.forward does."""
    import torch

    if "frac_coords" not in g.ndata or "pbc_offset" not in g.edata:
        return
    lat = lat.reshape(-1, 3, 3)
    g.edata["lattice"] = torch.repeat_interleave(lat, g.batch_num_edges(), dim=0)
    g.edata["pbc_offshift"] = (g.edata["pbc_offset"].unsqueeze(dim=-1) * g.edata["lattice"]).sum(dim=1)
    g.ndata["pos"] = (
        g.ndata["frac_coords"].unsqueeze(dim=-1) * torch.repeat_interleave(lat, g.batch_num_nodes(), dim=0)
    ).sum(dim=1)


def predict(model: Any, batch: tuple, spec: ModelSpec) -> tuple[Any, Any]:
    """Run the model on one collated batch; return (predictions, labels), both of shape [batch]."""
    g, lat, l_g, state_attr, labels = _unpack(batch, spec)
    _set_geometry(g, lat)
    if spec.include_line_graph:
        preds = model(g=g, l_g=l_g, state_attr=state_attr)
    elif spec.pass_state_attr:
        preds = model(g, state_attr=state_attr)
    else:
        preds = model(g, state_attr=None)
    return preds.reshape(labels.shape), labels


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def _batches(loader: Any, max_batches: int | None) -> Iterator[tuple]:
    """Yield the first ``max_batches`` batches (all if None), without collating one batch too many."""
    return itertools.islice(loader, max_batches)


def _batch_size(batch: tuple) -> int:
    """Count the structures in a collated batch."""
    return int(batch[0].batch_size)


def train_step(model: Any, optimizer: Any, batch: tuple, spec: ModelSpec) -> float:
    """One forward + L1 loss + backward + optimiser step; return the loss."""
    import torch.nn.functional as F

    optimizer.zero_grad(set_to_none=True)
    preds, labels = predict(model, batch, spec)
    loss = F.l1_loss(preds, labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def time_training(model: Any, loader: Any, spec: ModelSpec, max_batches: int | None) -> dict[str, float]:
    """Warm up on one batch (untimed), then time training over up to ``max_batches`` batches."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    train_step(model, optimizer, next(iter(loader)), spec)
    n_structures, n_batches, loss = 0, 0, float("nan")
    start = time.perf_counter()
    for batch in _batches(loader, max_batches):
        loss = train_step(model, optimizer, batch, spec)
        n_structures += _batch_size(batch)
        n_batches += 1
    seconds = time.perf_counter() - start
    return {
        "train_seconds": seconds,
        "train_batches": n_batches,
        "train_structures": n_structures,
        "train_structures_per_s": n_structures / seconds,
        "train_last_loss": loss,
    }


def time_inference(model: Any, loader: Any, spec: ModelSpec, max_batches: int | None) -> dict[str, float]:
    """Warm up on one batch (untimed), then time inference without gradients on the same batches."""
    import torch

    model.eval()
    n_structures, n_batches = 0, 0
    with torch.no_grad():
        predict(model, next(iter(loader)), spec)
        start = time.perf_counter()
        for batch in _batches(loader, max_batches):
            predict(model, batch, spec)
            n_structures += _batch_size(batch)
            n_batches += 1
        seconds = time.perf_counter() - start
    return {
        "infer_seconds": seconds,
        "infer_batches": n_batches,
        "infer_structures": n_structures,
        "infer_structures_per_s": n_structures / seconds,
    }


# --------------------------------------------------------------------------------------------
# Environment and memory
# --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Return the current resident set size of this process, MB."""
    with open("/proc/self/statm") as fh:
        resident_pages = int(fh.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(threads: int) -> dict[str, Any]:
    """Library versions, CPU, thread count and date of the run."""
    import dgl
    import matgl
    import torch

    return {
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "matgl": matgl.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# Worker
# --------------------------------------------------------------------------------------------


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything the benchmark reports for one model; runs inside a worker subprocess."""
    import torch
    from matgl.ext.pymatgen import get_element_list

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = MODEL_SPECS[name]
    result: dict[str, Any] = {"model": name, **environment(torch.get_num_threads())}

    start = time.perf_counter()
    structures, labels = load_structures(Path(args.data), Path(args.splits), args.n)
    result["load_seconds"] = time.perf_counter() - start
    result["n_structures"] = len(structures)

    elements = get_element_list(structures)
    result["n_elements"] = len(elements)
    converter = spec.build_converter(elements)
    with tempfile.TemporaryDirectory(prefix="speed_mgl_") as cache_dir:
        start = time.perf_counter()
        dataset = build_dataset(converter, spec, structures, labels, cache_dir)
        result["convert_seconds"] = time.perf_counter() - start
    result["convert_structures_per_s"] = len(structures) / result["convert_seconds"]
    result.update(graph_stats(dataset, spec))
    del structures
    gc.collect()

    model = spec.build_model(elements)
    result["n_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    loader = make_loader(dataset, spec, args.batch_size)
    result["batch_size"] = args.batch_size

    result["rss_before_train_mb"] = current_rss_mb()
    result["peak_rss_before_train_mb"] = peak_rss_mb()
    result.update(time_training(model, loader, spec, args.max_batches))
    result.update(time_inference(model, loader, spec, args.max_batches))
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_minus_baseline_mb"] = result["peak_rss_mb"] - result["rss_before_train_mb"]
    return result


def run_worker(name: str, args: argparse.Namespace) -> int:
    """Measure ``name`` and print the result as JSON on stdout's last line.

    The repository root goes first on ``sys.path`` so that ``matgl_cgat`` is the working tree's.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        result = measure(name, args)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the parent as JSON
        traceback.print_exc()
        result = {"model": name, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def worker_command(name: str, args: argparse.Namespace) -> list[str]:
    """Command line that re-invokes this script as a worker for ``name``."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--n",
        str(args.n),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--data",
        str(args.data),
        "--splits",
        str(args.splits),
    ]
    if args.max_batches is not None:
        cmd += ["--max-batches", str(args.max_batches)]
    return cmd


def worker_env(threads: int) -> dict[str, str]:
    """Environment of a worker: DGL on PyTorch, OpenMP/MKL capped at ``threads``."""
    env = dict(os.environ)
    env["DGLBACKEND"] = "pytorch"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def last_json_line(text: str) -> dict[str, Any] | None:
    """Parse the JSON object on the last non-empty line of ``text``, if there is one."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        parsed = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one worker subprocess and return its result, or an error record."""
    print(f"[speed] measuring {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            worker_command(name, args),
            capture_output=True,
            text=True,
            env=worker_env(args.threads),
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"model": name, "error": f"timed out after {args.timeout} s"}
    result = last_json_line(proc.stdout) or {"model": name, "error": f"worker exited with code {proc.returncode}"}
    if "error" in result:
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-15:]
        print(f"[speed] {name} FAILED: {result['error']}", file=sys.stderr, flush=True)
    else:
        print(f"[speed] {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return result


TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("params", "n_params", "{:,}"),
    ("train str/s", "train_structures_per_s", "{:.1f}"),
    ("infer str/s", "infer_structures_per_s", "{:.1f}"),
    ("graph conv. str/s", "convert_structures_per_s", "{:.1f}"),
    ("graph conv. s", "convert_seconds", "{:.1f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("peak − baseline MB", "peak_minus_baseline_mb", "{:.0f}"),
    ("atoms/str", "mean_atoms", "{:.1f}"),
    ("edges/graph", "mean_edges", "{:.0f}"),
)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per model; failed models show their error."""
    header = "| model | " + " | ".join(title for title, _, _ in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    rows = [header, rule]
    for name, res in results.items():
        if "error" in res:
            rows.append(f"| {name} | failed: {res['error']} |" + " |" * (len(TABLE_COLUMNS) - 1))
            continue
        cells = [fmt.format(res[key]) if key in res else "–" for _, key, fmt in TABLE_COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_parent(args: argparse.Namespace) -> int:
    """Measure every requested model in its own subprocess, write JSON, print a Markdown table."""
    for path in (args.data, args.splits):
        if not Path(path).is_file():
            print(f"[speed] missing input file: {path}", file=sys.stderr)
            return 2
    env = environment(args.threads)
    results = {name: run_model(name, args) for name in args.models}
    payload = {
        "settings": {
            "n": args.n,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "max_batches": args.max_batches,
            "split": f"{SPLIT_KEY}/train[:{args.n}]",
            "data": str(args.data),
        },
        "environment": env,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"n={args.n}, batch size {args.batch_size}, {args.threads} threads, "
        f"max batches {args.max_batches or 'all'}; {env['cpu']}; torch {env['torch']}, "
        f"dgl {env['dgl']}, matgl {env['matgl']}; {env['date']}\n"
    )
    print(markdown_table(results))
    print(f"\nResults written to {out}")
    return 0 if all("error" not in r for r in results.values()) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options shared by the parent and its workers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=sorted(MODEL_SPECS))
    parser.add_argument("--n", type=int, default=2000, help="number of structures (default 2000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--max-batches", type=int, default=None, help="timed batches (default: one epoch)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="mp_gap.jsonl.gz")
    parser.add_argument("--splits", type=Path, default=None, help="splits.json (default: beside --data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="combined JSON output")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per model")
    parser.add_argument("--worker", choices=sorted(MODEL_SPECS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.splits is None:
        args.splits = Path(args.data).parent / "splits.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parent mode by default, worker mode with ``--worker``."""
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args)
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
