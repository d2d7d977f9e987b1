"""The machine and torch settings a check runs under: what triagers need to compare reports across machines."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

from qdoctor.facts import Environment

# CPU flags that matter for int8 kernels (names as /proc/cpuinfo spells them).
INT8_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_tile",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "sve2",
)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "KMP_AFFINITY",
    "GOMP_CPU_AFFINITY",
)


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gather_environment(quantized_engine: str | None = None, num_threads: int | None = None) -> Environment:
    model, flags = _cpuinfo()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = "unknown"
    return Environment(
        torch_version=str(torch.__version__),  # plain str: TorchVersion would make facts unpicklable without torch
        python_version=sys.version.split()[0],
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_model=model or "unknown",
        cpu_isa=[f for f in INT8_FLAGS if f in flags],
        cpu_capability=capability,
        cpu_count=cpu_count(),
        quantized_engine=quantized_engine or torch.backends.quantized.engine,
        supported_engines=list(torch.backends.quantized.supported_engines),
        num_threads=num_threads or torch.get_num_threads(),
        num_interop_threads=torch.get_num_interop_threads(),
        thread_env={k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    )
