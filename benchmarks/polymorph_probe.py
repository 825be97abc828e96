"""Can a model tell an element's crystals apart? Its answers and representation distances for every
one-element crystal of an element in the shared mp_gap data, beside the textbook crystals of it.

    DGLBACKEND=pytorch python benchmarks/polymorph_probe.py --model CGAT-PBE-Eform --element C
    DGLBACKEND=pytorch python benchmarks/polymorph_probe.py --model runs/models/CGAT-PBE-Eform-counts4 --element C

Prints each crystal's label and prediction, then for each textbook crystal its nearest crystals in the
pooled representation (Euclidean distance) and the median distance between all of them: a diamond
that sits as close to simple-cubic carbon as the typical pair does not, for the model, differ from it.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import matgl
import torch

import matgl_cgat  # noqa: F401  (shipped names for matgl.load_model)
from matgl_cgat.data import default_data_dir
from matgl_cgat.textbook import textbook_crystals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="shipped name or model folder")
    parser.add_argument("--element", required=True)
    parser.add_argument("--data", type=Path, default=None, help="mp_gap folder (default: the shared one)")
    args = parser.parse_args()
    from pymatgen.core import Structure

    model = matgl.load_model(args.model)
    model.eval()
    prop = (model.metadata or {}).get("property")
    structures = {}
    with gzip.open((args.data or default_data_dir()) / "mp_gap.jsonl.gz", "rt") as f:
        for line in f:
            record = json.loads(line)
            if {sp["element"] for site in record["structure"]["sites"] for sp in site["species"]} == {args.element}:
                structures[f"{record['mat_id']} ({prop} {record.get(prop)})"] = Structure.from_dict(record["structure"])
    for crystal in textbook_crystals():
        s = crystal.structure()
        if {e.symbol for e in s.composition.elements} == {args.element}:
            structures[f"textbook {crystal.name}"] = s
    converter, names, features = model.graph_converter(), [], []
    for name, s in structures.items():
        with torch.no_grad():
            g = converter.get_graph(s)[0]
            f = model.represent(g)
            value = float(model.predict_from_features(f)[0, 0])
        names.append(name)
        features.append(f[0])
        print(f"{name:48s} prediction {value:+.3f}")
    distances = torch.cdist(torch.stack(features), torch.stack(features))
    for i, name in enumerate(names):
        if name.startswith("textbook"):
            nearest = [(names[j].split(" (")[0], round(float(distances[i, j]), 2)) for j in distances[i].argsort()[1:5]]
            print(f"{name}: nearest {nearest}")
    print(f"median distance between these crystals: {float(distances[distances > 0].median()):.2f}")


if __name__ == "__main__":
    main()
