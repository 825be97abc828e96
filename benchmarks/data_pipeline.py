"""Time and memory of turning the shared data into CGAT graphs, and of reloading them from the cache.

Why: conversion must happen once, in parallel, and a second load must be near-instant (issue #3).
For comparison it also times the reference implementation's approach to the neighbour list (all
neighbours within 18 A, then sorted per site) against this package's growing-radius search, on the
same 500 structures.

Each measurement runs in a fresh subprocess; peak memory is ``ru_maxrss`` of that process and of
its conversion workers (children). Run from the repository root on an otherwise idle machine::

    DGLBACKEND=pytorch python benchmarks/data_pipeline.py --out benchmarks/data_pipeline_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mp_gap" / "mp_gap.jsonl.gz"


def _peaks() -> dict:
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(self_mb), "peak_rss_worker_mb": round(children_mb)}


def convert(data: Path, cache: Path, workers: int) -> dict:
    from matgl_cgat.data import load_dataset

    t = time.perf_counter()
    ds = load_dataset(data, "e_form_pbe", cache_dir=cache, workers=workers, progress=False)
    return {"seconds": time.perf_counter() - t, "structures": len(ds), "skipped": len(ds.skipped), **_peaks()}


def reload(data: Path, cache: Path) -> dict:
    from matgl_cgat.data import load_dataset

    t = time.perf_counter()
    ds = load_dataset(data, "e_form_pbe", cache_dir=cache, progress=False)
    opened = time.perf_counter() - t
    edges = sum(ds[i][0].num_edges() for i in range(len(ds)))
    return {"open_seconds": opened, "open_and_read_all_graphs_seconds": time.perf_counter() - t,
            "structures": len(ds), "edges": edges, **_peaks()}


def neighbour_search(data: Path, n: int) -> dict:
    """Reference approach (all neighbours within 18 A, sorted per site) vs nearest_neighbor_shells.

    Time and peak memory (tracemalloc, which sees numpy's allocations) of each search alone, on the
    first ``n`` structures of the file.
    """
    import itertools
    import tracemalloc

    import numpy as np

    from matgl_cgat.data._sources import ReadSpec, iter_items, materialise
    from matgl_cgat.graph import nearest_neighbor_shells

    spec = ReadSpec(("e_form_pbe",))
    structures = [materialise(item, spec)[1] for item in itertools.islice(iter_items(data, "jsonl"), n)]
    out: dict = {"structures": len(structures)}

    def reference() -> int:
        dropped = 0
        for s in structures:
            centers, _points, _images, dists = s.get_neighbor_list(18.0)
            order = np.lexsort((dists, centers))
            dropped += int(np.bincount(centers[order], minlength=len(s)).min() < 24)
        return dropped

    def ours() -> None:
        for s in structures:
            nearest_neighbor_shells(s.cart_coords, s.lattice.matrix, 24, tie_break=np.array(s.atomic_numbers))

    for name, fn in (("reference_18A", reference), ("growing_radius", ours)):
        tracemalloc.start()
        t = time.perf_counter()
        result = fn()
        out[f"{name}_seconds"] = time.perf_counter() - t
        out[f"{name}_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        if name == "reference_18A":
            out["reference_would_drop"] = result
    return out


def _worker(args) -> None:
    if args.task == "convert":
        out = convert(args.data, args.cache, args.workers)
    elif args.task == "reload":
        out = reload(args.data, args.cache)
    else:
        out = neighbour_search(args.data, args.n)
    print(json.dumps(out))


def _run(task: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--task", task, "--data", str(args.data), "--n", str(args.n)]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("data_pipeline_results.json"))
    parser.add_argument("--n", type=int, default=500, help="structures for the neighbour-search comparison")
    parser.add_argument("--task", choices=["convert", "reload", "neighbours"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        _worker(args)
        return
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found: pass --data PATH/mp_gap.jsonl.gz")
    results: dict = {"data": str(args.data), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "cpu_count": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="cgat_bench_"))
    try:
        for workers in (1, 2):
            cache = tmp / f"cache{workers}"
            results[f"convert_{workers}_workers"] = _run("convert", args, cache=cache, workers=workers)
            print(f"convert, {workers} worker(s): {results[f'convert_{workers}_workers']}", flush=True)
        results["reload"] = _run("reload", args, cache=tmp / "cache2")
        print(f"reload: {results['reload']}", flush=True)
        results["neighbour_search"] = _run("neighbours", args)
        print(f"neighbour search: {results['neighbour_search']}", flush=True)
        results["cache_size_mb"] = round(sum(p.stat().st_size for p in (tmp / "cache2").rglob("*")) / 2**20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
