"""Wall time of a whole ``model.finetune(...)`` call (3 epochs, 1,024 + 128 structures): any code version.

The call uses only arguments both the training core and the code before it accept, so the same script
measures both side by side. From the repository root, with the graph cache of the shared data in
``runs/graph_cache`` (any CLI command or example with that cache builds it)::

    git worktree add ../before 213b03d                 # the last commit before matgl_cgat.training
    (cd ../before && PYTHONPATH=. python ../main/benchmarks/finetune_wall_time.py)
    python benchmarks/finetune_wall_time.py '{"allocator": "system"}'
    python benchmarks/finetune_wall_time.py
"""
import os, sys, time, json, tempfile
os.environ.setdefault("DGLBACKEND", "pytorch")
import numpy as np, torch
torch.set_num_threads(2)
import matgl_cgat
from matgl_cgat import CGAT
from matgl_cgat.data import load_dataset, split_from_file
from pathlib import Path

from matgl_cgat.data import default_data_dir

extra = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
DATA = Path(os.environ.get("MATGL_CGAT_DATA") or default_data_dir())
CACHE = os.environ.get("GRAPH_CACHE", str(Path(__file__).resolve().parents[1] / "runs" / "graph_cache"))
ds = load_dataset(str(DATA / "mp_gap.jsonl.gz"), "e_form_pbe", cache_dir=CACHE, progress=False)
parts = split_from_file(ds, str(DATA / "splits.json"), "e_form_pbe")
train, val = parts["train"].subset(np.arange(1024)), parts["val"].subset(np.arange(128))
torch.manual_seed(0)
model = CGAT.from_preset("small")
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    model.finetune(train, val, policy="full", epochs=3, lr=1e-3, period=3, batch_size=64, out_dir=tmp, progress=False, **extra)
    dt = time.perf_counter() - t0
print(json.dumps({"code": matgl_cgat.__file__, "extra": extra, "seconds": round(dt, 1), "structures_per_s": round(3 * 1024 / dt, 1)}))
