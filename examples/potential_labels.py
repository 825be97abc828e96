"""Label a data file with a universal potential's formation enthalpy (resumable), for issue #34's routes.

Reads every structure of ``--data`` (default: the shared ``hifi_eform.jsonl.gz`` and
``mp_gap.jsonl.gz``), computes the potential's formation enthalpy with its own elemental references
(candidates include ``mp_gap.jsonl.gz``'s elemental crystals), and writes ``<out>/<file stem>.csv``
(``id,e_form_potential``) plus ``<out>/<file stem>.json`` (the references, skips, timings and the
command). Energies are cached under ``--cache``: a rerun after an interruption computes only what is
missing, and a finished file is rewritten from the cache in seconds.

    python examples/potential_labels.py --potential ../shared/models/matgl/M3GNet-MatPES-r2SCAN-v2025.1-PES \\
        --out runs/labels/M3GNet-MatPES-r2SCAN --cache runs/potential_cache

Potentials whose PyPI wheels ship their weights (the ``[potentials]`` extra, PyG stack) go through their
ASE calculators, by the names of ``matgl_cgat.potentials.NAMED_POTENTIALS``: ``--potential chgnet:r2scan``
(CHGNet fine-tuned to r2SCAN), ``chgnet:0.3.0`` (CHGNet, PBE with the Materials Project's 2020
corrections), ``sevenn:7net-mf-0:r2scan`` / ``sevenn:7net-mf-0:pbe`` (SevenNet-MF-0's two heads).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir, read_structures
from matgl_cgat.potentials import RelaxOptions, formation_enthalpies, load_potential


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", required=True, help="MatGL potential name (MatGL's cache) or folder")
    parser.add_argument("--data", type=Path, nargs="+", default=None)
    parser.add_argument("--label-key", default="e_form_pbe", help="a label every record of the file has "
                        "(only to read the records; e_form_exp for hifi_eform)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/potential_cache"))
    parser.add_argument("--relax", action="store_true", help="relax each structure (cell too) before its energy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = default_data_dir()
    files = args.data or [data_dir / "hifi_eform.jsonl.gz", data_dir / "mp_gap.jsonl.gz"]
    source = load_potential(args.potential, batch_size=args.batch_size)
    relax = RelaxOptions() if args.relax else None
    for path in files:
        key = "e_form_exp" if path.name.startswith("hifi_eform") else args.label_key
        t0 = time.time()
        records = read_structures(path, key)
        t_read = time.time() - t0
        t0 = time.time()
        result = formation_enthalpies(records.structures, source, ids=records.ids, relax=relax,
                                      reference_data=data_dir / "mp_gap.jsonl.gz", cache_dir=args.cache,
                                      on_error="skip", chunk=256)
        seconds = time.time() - t0
        print(result.summary(), f"in {seconds:.0f} s")
        stem = path.name.split(".")[0]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "e_form_potential"])
        for rid, value in result.values().items():
            writer.writerow([rid, f"{value:.6f}"])
        atomic_write_text(args.out / f"{stem}.csv", buffer.getvalue())
        report = {"potential": result.potential, "mode": result.mode, "file": str(path), "n": len(result.ids),
                  "computed": len(result.values()), "skipped": result.skipped, "from_cache": result.from_cache,
                  "seconds": round(seconds, 1), "read_seconds": round(t_read, 1),
                  "references": {el: {"energy_per_atom": e, "origin": result.references.origins[el]}
                                 for el, e in sorted(result.references.energies.items())},
                  "command": " ".join(shlex.quote(a) for a in sys.argv)}
        atomic_write_text(args.out / f"{stem}.json", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
