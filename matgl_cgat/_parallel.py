"""How many torch threads and conversion processes a prediction should use on this machine, now.

Measured on this project's 2-core machine (``benchmarks/screening_speed.py``, CGAT-PBE-BandGap,
2,000 crystals, the CLI end to end; benchmarks/RESULTS.md): idle, two intra-op threads did best
(127-165 structures/s against 111-126 with one); with another job busy on one core, two threads fell
to 64-82 while one thread kept 104-112. Intra-op threads synchronise at every small operation, so one that waits for a core another
job holds stalls them all; processes converting structures do not wait on each other. So the choice
follows the cores that are free *now*, read from the kernel's CPU counters over a fraction of a
second rather than from the load average, which lags by a minute.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Parallelism:
    """Torch intra-op threads in this process and conversion worker processes beside it."""

    threads: int
    workers: int
    free_cores: float | None  # what the choice was based on; None: as asked

    def describe(self) -> str:
        why = "as asked" if self.free_cores is None else f"{self.free_cores:.1f} of {usable_cores()} cores free"
        return f"{self.threads} thread(s), {self.workers} conversion process(es) ({why})"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a SLURM allocation), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_cores(interval: float = 0.3) -> float:
    """Cores idle over the next ``interval`` seconds, from ``/proc/stat``; all usable ones where the
    counters cannot be read (not Linux)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        return fields[3] + (fields[4] if len(fields) > 4 else 0.0), sum(fields)  # idle + iowait, total

    cores = usable_cores()
    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float(cores)
    machine = os.cpu_count() or cores
    if total1 <= total0:
        return float(cores)
    return min(float(cores), machine * (idle1 - idle0) / (total1 - total0))


def choose_parallelism(free: float | None = None) -> Parallelism:
    """Threads and workers for the cores free now (see the module's measurements). Beyond two free
    cores the extra ones convert structures; that rule was not measured on more cores than two."""
    free = free_cores() if free is None else free
    if free < 1.5:
        return Parallelism(1, max(1, min(usable_cores(), 8)), free)
    if free < 3:
        return Parallelism(2, 0, free)
    return Parallelism(2, min(int(free) - 2, 8), free)


def training_threads(free: float | None = None) -> int:
    """Torch threads for a training started now: one per free core (rounded), at least one.

    Measured on this project's 2-core machine (``benchmarks/training_throughput.py --model-only``,
    ``small`` preset, 512 crystals): idle, 2 threads trained 62.4 structures/s against 38.6 with one;
    with another job busy on one core, 2 threads fell to 22.6 while one kept 35.4. The choice is made
    once, at the start: a neighbour that starts or stops during a long training is not followed.
    """
    free = free_cores() if free is None else free
    return max(1, min(usable_cores(), int(free + 0.5)))
