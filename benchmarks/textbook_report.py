"""Every shipped model's answers on the textbook set (``matgl_cgat.textbook``), as markdown tables.

Band-gap models: the gap (eV), marked ``M`` where the model's metal decision calls the crystal a
metal; formation-energy models: value ± sigma (eV/atom); then the misses of issue #36's bars. Δ-models
are left out (they need their potential). Writes ``--out`` (JSON) and prints the tables.

    DGLBACKEND=pytorch python benchmarks/textbook_report.py --out benchmarks/textbook.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/textbook.json"))
    args = ap.parse_args()

    from matgl_cgat.predict import by_fidelity, property_of
    from matgl_cgat.pretrained import available_models, load_model
    from matgl_cgat.textbook import textbook_answers, textbook_misses

    models = {n: load_model(n) for n in available_models() if not n.endswith("-Delta")}
    rows = textbook_answers(models)
    views = by_fidelity(models)
    gaps = [n for n, m in views.items() if "gap" in str(property_of(m) or "").lower() or "[" in n]
    energies = [n for n in views if n not in gaps]
    short = {n: n.replace("CGAT-", "").replace("MultiFidelity-BandGap", "MF") for n in views}

    def gap_cell(r, n):
        decision = r.get(f"{n} metal")
        return f"{r[n]:.2f}" + (" M" if decision is not None and decision.metal else "")

    def energy_cell(r, n):
        sigma = r.get(f"{n} sigma")
        return f"{r[n]:+.3f}" + (f" ± {sigma:.3f}" if sigma is not None else "")

    lines = ["| crystal | MP id | PBE gap (MP) | measured gap | " + " | ".join(short[n] for n in gaps) + " |",
             "|---|---|---:|---:|" + "---:|" * len(gaps)]
    for r in rows:
        c = r["crystal"]
        lines.append(f"| {c.name} | {c.mp_id or '-'} | {c.gap_pbe_mp:.2f} | {c.gap_measured:.2f} | "
                     + " | ".join(gap_cell(r, n) for n in gaps) + " |")
    lines += ["", "| crystal | E_form (MP, PBE) | " + " | ".join(short[n] for n in energies) + " |",
              "|---|---:|" + "---:|" * len(energies)]
    for r in rows:
        c = r["crystal"]
        lines.append(f"| {c.name} | {c.e_form_mp:+.3f} | " + " | ".join(energy_cell(r, n) for n in energies) + " |")
    misses = textbook_misses(models, rows)
    lines += ["", f"{len(misses)} misses:"] + [f"- {m}" for m in misses]
    print("\n".join(lines))
    record = {"date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/textbook_report.py",
              "answers": [{"crystal": r["crystal"].name, **{n: r[n] for n in views},
                           **{f"{n} sigma": r.get(f"{n} sigma") for n in views},
                           **{f"{n} metal": (None if r.get(f"{n} metal") is None else r[f"{n} metal"].metal)
                              for n in views}} for r in rows],
              "misses": [str(m) for m in misses]}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
