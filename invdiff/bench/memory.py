"""Peak memory of a piece of work: device memory on a GPU, resident set size on the CPU.

On CUDA the allocator's peak (``torch.cuda.max_memory_allocated``) is reset before the work and
read after it. On Linux the kernel's high-water mark of the resident set (``VmHWM`` in
``/proc/self/status``) is reset by writing ``5`` to ``/proc/self/clear_refs``, so each piece of
work gets its own peak; where that is not possible the process's lifetime peak
(``resource.getrusage``) is reported, which is an upper bound.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak(device: torch.device) -> bool:
    """Start a new peak for ``device``; False when only the lifetime peak can be read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_bytes(device: torch.device) -> int:
    """The peak since ``reset_peak``: allocated device memory on CUDA, resident set on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _vm_hwm_bytes()
    if hwm is not None:
        return hwm
    # ru_maxrss is in kB on Linux, in bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_mb(device: torch.device) -> float:
    return peak_bytes(device) / 2**20
