"""Which structures of a JSON-lines data file hold a vacuum layer (``domain.vacuum_directions``).

    python benchmarks/vacuum_scan.py --data ../shared/data/mp_gap/mp_gap.jsonl.gz --out benchmarks/vacuum_scan.json
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from pymatgen.core import Structure

from matgl_cgat.domain import VACUUM_GAP, vacuum_directions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mp_gap/mp_gap.jsonl.gz")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/vacuum_scan.json"))
    args = ap.parse_args()
    n, found = 0, []
    with gzip.open(args.data, "rt") as f:
        for line in f:
            record = json.loads(line)
            structure = Structure.from_dict(record["structure"])
            n += 1
            directions = vacuum_directions(structure)
            if directions:
                found.append({"mat_id": record["mat_id"], "formula": structure.composition.reduced_formula,
                              "directions": directions})
    args.out.write_text(json.dumps({"gap_A": VACUUM_GAP, "structures": n, "with_vacuum": found}, indent=1) + "\n")
    print(f"{len(found)} of {n} structures hold an empty layer of {VACUUM_GAP} A or more")


if __name__ == "__main__":
    main()
