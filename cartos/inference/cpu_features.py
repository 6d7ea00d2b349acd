"""Which INT8 dot-product instructions this CPU has, and why that matters.

ONNX Runtime's fused INT8 kernels are exact up to requantisation on CPUs with
a native 8-bit dot product (x86 VNNI, ARM ``asimddp``/``i8mm``). On x86 CPUs
with only AVX2, the u8×s8 kernels go through 16-bit intermediate sums and the
same QDQ model agrees less well with its FP32 parent (measured: embedding
cosine 0.994 with VNNI, 0.982–0.985 on an AVX2-only AMD EPYC, whatever the
weight range or activation signedness). Model cards and tests record which
class of kernels produced a number.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
ARM_DOT_FLAGS = ("asimddp", "i8mm")


@cache
def int8_kernels() -> str:
    """``vnni``, ``avx2``, ``arm-dotprod``, ``arm`` or ``unknown`` for this machine."""
    machine = platform.machine().lower()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if machine in ("x86_64", "amd64"):
        if any(f in flags for f in VNNI_FLAGS):
            return "vnni"
        return "avx2" if "avx2" in flags else "unknown"
    if machine in ("aarch64", "arm64"):
        return "arm-dotprod" if any(f in flags for f in ARM_DOT_FLAGS) else "arm"
    return "unknown"


def exact_int8_dot_product() -> bool:
    """True where ONNX Runtime's fused INT8 kernels match the QDQ graph closely."""
    return int8_kernels() in ("vnni", "arm-dotprod")
