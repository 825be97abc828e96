"""Speed of each route of issue #34 to a prediction, side by side on one core (structures/s).

On ``--n`` structures of the shared r2SCAN test split and beyond (the first records of
``hifi_eform.jsonl.gz``), from pymatgen structures to a formation enthalpy:

- the potential's static formation enthalpy (batched, MatGL 1.x), elemental references computed before
  the clock starts (the
  zero-shot and corrected routes; the correction itself costs nothing);
- a CGAT's prediction (graph conversion + forward pass; the transfer and pseudo-label routes);
- both, for a Δ-model (``anchored_predictions``).

Run it on an otherwise idle machine; writes ``benchmarks/potential_speed.json``.

    python benchmarks/potential_speed.py --potential ../shared/models/matgl/M3GNet-MatPES-r2SCAN-v2025.1-PES
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

import matgl
from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, read_structures
from matgl_cgat.potentials import formation_enthalpies, load_potential


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", required=True)
    parser.add_argument("--model", default="CGAT-r2SCAN-Eform")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/potential_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = read_structures(default_data_dir() / "hifi_eform.jsonl.gz", "e_form_exp")
    structures, ids = records.structures[: args.n], records.ids[: args.n]
    source = load_potential(args.potential)
    model = matgl.load_model(args.model)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as fresh:
        first = formation_enthalpies(structures, source, ids=ids, cache_dir=cache, progress=False,  # references
                                     reference_data=default_data_dir() / "mp_gap.jsonl.gz", on_error="skip")
        t0 = time.perf_counter()  # energies only: references given, an empty energy cache
        result = formation_enthalpies(structures, source, ids=ids, cache_dir=fresh, progress=False,
                                      references=first.references, on_error="skip")
        potential_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    converter = model.graph_converter()
    with torch.no_grad():
        for s in structures:
            model(converter.get_graph(s)[0])
    cgat_s = time.perf_counter() - t0
    n = len(structures)
    report = {"n": n, "threads": args.threads, "skipped_by_potential": len(result.skipped),
              "potential_static_per_s": round(n / potential_s, 1), "cgat_per_s": round(n / cgat_s, 1),
              "delta_model_per_s": round(n / (potential_s + cgat_s), 1),
              "potential": source.identity, "model": args.model,
              "command": "python benchmarks/potential_speed.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
