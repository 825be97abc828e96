"""Screening throughput: ``mgl-cgat predict`` against the batched Python routes, idle and beside a busy job.

Measures, on the same structures (the first N records of a JSON-lines file) and the same model:
  * python-dataset: ``load_dataset`` (graph conversion in its worker processes) + ``predict_dataset``,
    torch's default threads: the batched route the issue compares against;
  * python-table: ``predict_table`` (the one prediction path, every head, flags), parallelism chosen;
  * cli: ``mgl-cgat predict FILE --out X.csv`` end to end in a fresh process (start-up, model loading
    and writing included), parallelism chosen; and the CLI at fixed --threads/--workers settings, to
    find the best one on this machine.
Then the same with one busy process (a pure-Python loop) on one core. Values: the CLI's column
against ``predict_dataset``'s, largest absolute difference. Last, idle, the first ``--n-large``
records by the Python route and the CLI as chosen: the CLI's start-up (imports, model loading) is a
fixed cost, so its share falls as the screen grows; and the start-up itself (the CLI on one crystal).

    python benchmarks/screening_speed.py --data ../shared/data/mp_gap/mp_gap.jsonl.gz --n 2000 \
        --n-large 10000 --model CGAT-PBE-BandGap --out benchmarks/screening_speed.json
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")


def python_dataset(path: Path, model_name: str) -> tuple[float, dict]:
    import torch

    from matgl_cgat.data import load_dataset
    from matgl_cgat.pretrained import load_model

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model(model_name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = load_dataset(path, "vol_pbe", cache_dir=cache, progress=False)
        values = model.predict_dataset(ds, batch_size=128)
    return time.perf_counter() - start, dict(zip(ds.ids, map(float, values)))


def python_table(path: Path, model_name: str) -> float:
    from matgl_cgat.predict import predict_table
    from matgl_cgat.pretrained import load_model

    model = load_model(model_name)
    start = time.perf_counter()
    predict_table({"m": model}, path)
    return time.perf_counter() - start


def cli(path: Path, model_name: str, extra: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "t.csv"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "matgl_cgat.cli", "predict", str(path), "--model", model_name,
                        "--out", str(out), "--quiet", *extra], check=True, capture_output=True)
        wall = time.perf_counter() - start
        import csv

        with open(out) as f:
            rows = list(csv.DictReader(f))
    column = next(k for k in rows[0] if k.startswith(model_name) and k.endswith(")") and "sigma" not in k
                  and "label" not in k)
    return wall, {r["id"]: float(r[column]) for r in rows}


def in_process(fn, *args):
    """Run ``fn`` in a fresh interpreter (no warm caches, no threads set by an earlier run)."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import screening_speed as s; "
            f"r = s.{fn}(*{[str(a) for a in args]!r}); print(json.dumps(r[0] if isinstance(r, tuple) else r))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def measure(path: Path, model: str, label: str) -> dict:
    rows = {}
    n = sum(1 for _ in gzip.open(path, "rt"))
    rows["python-dataset"] = n / in_process("python_dataset", path, model)
    rows["python-table"] = n / in_process("python_table", path, model)
    wall, _ = cli(path, model, [])
    rows["cli (chosen)"] = n / wall
    for threads, workers in itertools.product((1, 2), (0, 1, 2)):
        wall, _ = cli(path, model, ["--threads", str(threads), "--workers", str(workers)])
        rows[f"cli --threads {threads} --workers {workers}"] = n / wall
    for k, v in rows.items():
        print(f"{label:6s} {k:36s} {v:7.1f} structures/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mp_gap/mp_gap.jsonl.gz")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--n-large", type=int, default=10000)
    ap.add_argument("--model", default="CGAT-PBE-BandGap")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/screening_speed.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, large, one = (Path(folder) / f"{n}.jsonl.gz" for n in (args.n, args.n_large, 1))
        for target, n in ((path, args.n), (large, args.n_large), (one, 1)):
            with gzip.open(args.data, "rt") as src, gzip.open(target, "wt") as dst:
                for line in itertools.islice(src, n):
                    dst.write(line)
        _, reference = python_dataset(path, args.model)
        _, shown = cli(path, args.model, [])
        worst = max(abs(reference[k] - shown[k]) for k in reference)
        print(f"largest |cli - predict_dataset| over {len(reference)} structures: {worst:.2e}")
        idle = measure(path, args.model, "idle")
        busy_proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1)
            busy = measure(path, args.model, "busy")
        finally:
            busy_proc.kill()
        time.sleep(1)
        start_up = min(cli(one, args.model, [])[0] for _ in range(3))
        n_large = sum(1 for _ in gzip.open(large, "rt"))
        at_large = {"python-dataset": n_large / in_process("python_dataset", large, args.model),
                    "cli (chosen)": n_large / cli(large, args.model, [])[0]}
        print(f"idle, {n_large}: {at_large}; CLI start-up (one crystal, best of 3) {start_up:.2f} s", flush=True)
    fixed = lambda rows: max(v for k, v in rows.items() if k.startswith("cli --"))  # noqa: E731
    summary = {
        "n": args.n, "model": args.model, "cores": os.cpu_count(), "largest_abs_difference": worst,
        "idle": idle, "busy_one_core": busy,
        "idle_cli_over_python_dataset": idle["cli (chosen)"] / idle["python-dataset"],
        "busy_cli_over_best_fixed_setting": busy["cli (chosen)"] / fixed(busy),
        "idle_cli_over_best_fixed_setting": idle["cli (chosen)"] / fixed(idle),
        "cli_start_up_s": start_up, "n_large": n_large, "idle_large": at_large,
        "idle_large_cli_over_python_dataset": at_large["cli (chosen)"] / at_large["python-dataset"],
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if "over" in k}, indent=1))


if __name__ == "__main__":
    main()
