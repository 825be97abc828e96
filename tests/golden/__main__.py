"""Write tests/golden/golden.json on this stack: ``python -m tests.golden [--data DIR]``."""

import argparse
import json
from pathlib import Path

from matgl_cgat._io import atomic_write_text
from matgl_cgat.data import default_data_dir
from tests.golden import GOLDEN, compute

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data", type=Path, default=None)
args = parser.parse_args()
data = args.data or default_data_dir()
if data is None or not (Path(data) / "mp_gap.jsonl.gz").is_file():
    raise SystemExit("the golden answers need the shared mp_gap data: pass --data")
result = compute(Path(data))
atomic_write_text(GOLDEN, json.dumps(result))
print(f"wrote {GOLDEN}: {len(result['models'])} models, training losses {result['training']['losses']}")
