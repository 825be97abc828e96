"""A screen over several processes, GPUs or nodes: each writes its own part, rank 0 merges them in order.

Processes are started and connected by Lightning's Fabric, the launcher under the training engine
(``--devices``, ``--num-nodes``, ``--strategy``, ``--accelerator``; under SLURM it reads the job's
ranks itself). Process ``r`` of ``W`` takes the batches ``r, r + W, r + 2W, ...`` of the input and does
not even parse the others' records; it appends its rows, each with its position in the input, to
``<out>.part<r>of<W>.jsonl`` (resumable like any table, see :mod:`matgl_cgat._table_out`). When every
part is done, rank 0 merges them by position into ``<out>``, so the table is the one a single
process writes, row for row, and removes the parts.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

from matgl_cgat._table_out import StreamingTable
from matgl_cgat.predict import DuplicateId


def launch(accelerator: str | None, devices, num_nodes: int | None, strategy: str | None):
    """Start (or join) the processes of a screen and return Lightning's ``Fabric`` for them.

    Several processes talk through DDP with a week's timeout rather than torch's 30 minutes: a process
    whose part was finished before an interruption waits for the others at the end, however long
    their share takes. Lightning's complaints about the options become one-line errors."""
    from datetime import timedelta

    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    several = (isinstance(devices, int) and devices > 1) or (num_nodes or 1) > 1
    chosen = DDPStrategy(timeout=timedelta(days=7)) if several and strategy in (None, "auto", "ddp") else (
        strategy or "auto")
    try:
        fabric = Fabric(accelerator=accelerator or "cpu", devices=devices or 1, num_nodes=num_nodes or 1,
                        strategy=chosen)
        fabric.launch()
    except (RuntimeError, TypeError, ValueError) as exc:  # Lightning's MisconfigurationException is a ValueError
        raise ValueError(f"--accelerator/--devices/--num-nodes/--strategy: {exc}") from None
    return fabric


def takes(rank: int, world: int, batch_size: int):
    """Which input positions process ``rank`` of ``world`` predicts: whole batches, in turn."""
    return lambda position: (position // batch_size) % world == rank


def part_path(out: Path, rank: int, world: int) -> Path:
    return out.with_name(f"{out.name}.part{rank}of{world}.jsonl")


def part_rows(rows: list[dict], positions: dict, flat, nested) -> list[dict]:
    """Rows of a part: the position in the input (to merge by), then the table's two forms of the row."""
    return [{"id": r["id"], "position": positions.pop(r["id"]), "flat": flat(r), "json": nested(r)} for r in rows]


def _read_part(path: Path) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def merge_parts(out: Path, world: int, columns: list[str], signature: dict, units: dict, overwrite: bool,
                chunk: int = 1000) -> int:
    """Merge the ``world`` finished parts into ``out`` by input position; returns the row count."""
    parts = [part_path(out, r, world) for r in range(world)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ValueError(f"--out {out}: the part(s) {missing} are not finished; run the same command again")
    table = StreamingTable(out, columns, {**signature, "merged_from": world}, overwrite=overwrite)
    merged = heapq.merge(*(_read_part(p) for p in parts), key=lambda row: row["position"])
    batch: list[dict] = []
    seen: dict[str, int] = {}
    for row in merged:
        # each process checks the ids of its own share; an id in two shares is found only here
        if row["id"] in seen:
            raise DuplicateId(f"duplicate structure id {row['id']!r} at input positions {seen[row['id']]} and "
                              f"{row['position']}; ids key the rows of the table, so each must name one crystal")
        seen[row["id"]] = row["position"]
        if row["id"] in table.done:  # an interrupted merge: what it wrote stays
            continue
        batch.append(row)
        if len(batch) == chunk:
            table.write([r["flat"] for r in batch], [r["json"] for r in batch])
            batch = []
    if batch:
        table.write([r["flat"] for r in batch], [r["json"] for r in batch])
    if not seen:  # nothing predicted anywhere: no table, as with one process
        table.discard()
        for p in parts:
            p.unlink()
            signature_path(p).unlink(missing_ok=True)
        return 0
    written = table.finish(units)
    for p in parts:
        p.unlink()
        signature_path(p).unlink(missing_ok=True)
    return written


def close(wait_s: float = 120.0) -> None:
    """End the processes' communication group before the interpreter exits, rank 0 last.

    Left to exit, the group's threads were torn down mid-flight now and then ("terminate called without
    an active exception", the process killed by SIGABRT after the right one-line error). And rank 0
    hosts the store through which the group was formed: if it exits while another rank is still
    tearing its group down, that rank can wait on it for ever (seen in CI: rank 1 in a futex wait
    after rank 0 had gone). So every rank meets at a barrier, the others end their groups first and
    count themselves off in the store, and rank 0 ends its own once all have (or after ``wait_s``)."""
    import time

    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    if not (dist.is_available() and dist.is_initialized()):
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    store = distributed_c10d._get_default_store()  # kept alive here beyond the group's end
    try:
        dist.barrier()
    except RuntimeError:  # a peer already gone: nothing to wait for
        pass
    key = "mgl-cgat/closed"
    if rank != 0:
        dist.destroy_process_group()
        try:
            store.add(key, 1)
        except RuntimeError:
            pass
        return
    deadline = time.monotonic() + wait_s
    try:
        while store.add(key, 0) < world - 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    except RuntimeError:
        pass
    dist.destroy_process_group()


def signature_path(part: Path) -> Path:
    """Beside a finished part: what made it, so a later run merges only its own command's parts."""
    return part.with_name(part.name + ".json")
