"""How short are the shortest contacts of real crystals? The evidence behind the converter's refusal
threshold and the domain flag (``matgl_cgat.graph.IMPOSSIBLE_FRACTION`` / ``SHORT_FRACTION``).

    python benchmarks/contact_distances.py --sample 6000   # writes benchmarks/contact_distances.json

For a seeded random sample of the shared mp_gap crystals: the shortest contact of each, as a fraction
of the covalent bond length of its two atoms (pymatgen's covalent radii), and the volume per atom.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir
from matgl_cgat.graph import IMPOSSIBLE_FRACTION, SHORT_FRACTION, nearest_neighbor_shells, shortest_contact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mp_gap.jsonl.gz (default: the shared data)")
    parser.add_argument("--sample", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("contact_distances.json"))
    args = parser.parse_args()
    data = args.data or (default_data_dir() / "mp_gap.jsonl.gz")
    with gzip.open(data, "rt") as f:
        lines = f.readlines()
    random.seed(args.seed)
    fractions, volumes = [], []
    for line in random.sample(lines, min(args.sample, len(lines))):
        s = Structure.from_dict(json.loads(line)["structure"])
        shells = nearest_neighbor_shells(s.cart_coords, s.lattice.matrix, num_neighbors=12)
        fractions.append(shortest_contact(s, shells).fraction)
        volumes.append(s.volume / len(s))
    f, v = np.array(fractions), np.array(volumes)
    pct = [0.1, 1, 50, 99, 99.9]
    result = {
        "data": str(data), "sample": len(f), "seed": args.seed,
        "shortest_contact_fraction": {"min": f.min(), **{f"p{p:g}": np.percentile(f, p) for p in pct}, "max": f.max()},
        "volume_per_atom": {"min": v.min(), **{f"p{p:g}": np.percentile(v, p) for p in pct}, "max": v.max()},
        "below_impossible": int((f < IMPOSSIBLE_FRACTION).sum()), "below_short": int((f < SHORT_FRACTION).sum()),
    }
    result = json.loads(json.dumps(result, default=float))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
