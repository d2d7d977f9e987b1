"""torch.profiler time breakdown: where a forward pass spends its time, by category and by module.

Profiled separately from the benchmark: the profiler's overhead distorts timings, so its numbers are shares and
attributions, while the latency qdoctor reports comes from qdoctor.gather.timing.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import profile, record_function

from qdoctor import facts as F
from qdoctor.facts import CategoryTime, ModuleTime, OpTime, Profile
from qdoctor.files import atomic_path
from qdoctor.gather import contention, progress, rounds
from qdoctor.gather.exclusive import exclusive_measurement
from qdoctor.introspect.copies import runnable

SCOPE = "qdoctor.module::"
TRACE_WORKER = "qdoctor"  # the worker name torch-tb-profiler shows for our trace files
MODULE_OPS_KEPT = 8  # ops kept per module in ModuleTime.ops
_QDQ_OPS = {
    "aten::quantize_per_tensor",
    "aten::quantize_per_channel",
    "aten::quantize_per_tensor_dynamic",
    "aten::dequantize",
    "aten::_make_per_tensor_quantized_tensor",
    "aten::_make_per_channel_quantized_tensor",
    "aten::q_per_channel_scales",
    "aten::int_repr",
}
_OBSERVER_OPS = ("fake_quantize", "fused_moving_avg_obs", "aminmax", "histc", "_choose_qparams")
# Int8 kernels outside the quantized:: namespace: torchao (torch._int_mm, weight-only packed matmuls) and what
# Inductor lowers PT2E models to (onednn::qconv/qlinear).
_INT8_KERNEL_OPS = (
    "aten::_int_mm",
    "aten::_weight_int8pack_mm",
    "aten::_weight_int4pack_mm",
    "aten::_weight_int4pack_mm_for_cpu",
    "aten::_dyn_quant_matmul_4bit",
    "onednn::qconv",
    "onednn::qlinear",
    "torchao::",
)
_TORCHAO_QDQ_OPS = ("torchao::quantize_affine", "torchao::dequantize_affine", "torchao::choose_qparams_affine")
_DECOMPOSED_QDQ_PARENTS = (
    "quantized_decomposed::",
    "torchao::quantize_affine",
    "torchao::dequantize_affine",
    "torchao::choose_qparams",
)
_BOOKKEEPING_OPS = {
    "aten::empty",
    "aten::empty_strided",
    "aten::view",
    "aten::reshape",
    "aten::_reshape_alias",
    "aten::size",
    "aten::detach",
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::as_strided",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::result_type",
    "aten::lift_fresh",
    "aten::alias",
    "aten::zeros",
    "aten::ones",
}


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Kineto logs "profiler_start/stop" and GPU probing errors from C++ straight to fd 2: keep them off the user's
    terminal (and out of --format json pipelines)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def op_category(name: str, module_kind: str | None, module_on_int8: bool) -> str:
    """The category of one profiled op, given the module it ran in (None outside any leaf module)."""
    if name.startswith(_TORCHAO_QDQ_OPS):
        return F.CAT_QDQ
    if name.startswith(_INT8_KERNEL_OPS):
        return F.CAT_INT8
    if name.startswith(("quantized::", "quantized_decomposed::quantize", "quantized_decomposed::dequantize")):
        return F.CAT_QDQ if "quantize_per" in name or "dequantize" in name else F.CAT_INT8
    if name in _QDQ_OPS or name.startswith("quantized_decomposed::"):
        return F.CAT_QDQ
    if module_kind in (F.OBSERVER, F.FAKE_QUANT) or any(key in name for key in _OBSERVER_OPS):
        return F.CAT_OBSERVER
    if module_kind in (F.QUANT_STUB, F.DEQUANT_STUB):
        return F.CAT_QDQ
    if "quantized" in name:
        return F.CAT_INT8
    if module_kind in (F.QUANTIZED,) or (module_kind is not None and module_on_int8):
        return F.CAT_INT8
    if name in _BOOKKEEPING_OPS:
        return F.CAT_OTHER
    if name.startswith("aten::") or module_kind is not None:
        return F.CAT_FLOAT
    return F.CAT_OTHER


def profile_model(
    model: nn.Module,
    inputs: tuple[Any, ...],
    module_kinds: Mapping[str, str],
    int8_modules: set[str],
    runs: int | None = None,
    budget_s: float = 1.0,
    on_profiled: Callable[[Any], None] | None = None,
    copy_model: bool = True,
) -> Profile:
    """Profile ``runs`` forward passes of a copy of ``model`` (chosen to fit ``budget_s`` when not given).

    ``on_profiled`` is called with the finished ``torch.profiler.profile`` (e.g. to export its trace).
    TorchScript and torch.compile'd modules cannot take Python hooks (or would recompile): they are profiled
    without per-module scopes. ``copy_model=False`` runs ``model`` itself (a compiled module keeps its code).
    """
    subject = runnable(model) if copy_model else model
    handles = []
    open_scopes: list[Any] = []
    leaf_types: dict[str, str] = {}
    hookable = not isinstance(subject, torch.jit.ScriptModule) and type(subject).__name__ != "OptimizedModule"
    for path, module in subject.named_modules() if hookable else ():
        if not path or module_kinds.get(path) == F.CONTAINER:
            continue
        leaf_types[path] = type(module).__name__

        def pre(mod: nn.Module, args: tuple, *, _path: str = path) -> None:
            scope = record_function(SCOPE + _path)
            scope.__enter__()
            open_scopes.append(scope)

        def post(mod: nn.Module, args: tuple, output: Any) -> None:
            if open_scopes:
                open_scopes.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    try:
        # parallel checks take turns (qdoctor.gather.exclusive); under contention the profile runs on the free cores,
        # as the benchmark does (qdoctor.gather.contention), or its shares would be the machine's, not the model's
        conditions = contention.plan(torch.get_num_threads())
        with torch.no_grad(), exclusive_measurement(), contention.applied(conditions):
            subject(*inputs)  # warm-up (lazy initialisation, weight packing); the next call sizes the runs
            start = time.perf_counter()
            subject(*inputs)
            warm = time.perf_counter() - start
            if runs is None:
                runs = profiled_runs(warm, budget_s)
            # torch.autograd.profiler.profile is what torch.profiler.profile runs (Kineto, CPU activity); the
            # latter's start asks hasattr(torch, "_inductor"), which imports Inductor, Dynamo and sympy: seconds of
            # every check that never compiles anything
            # one run first: its events say how many runs the event budget holds (a big model's thousands of ops
            # per call, each a Python object once parsed, cost more memory than the model's own activations)
            counter = progress.Counter(total=runs)
            with _native_stderr_silenced(), profile(use_kineto=True, use_cpu=True) as first:
                subject(*inputs)
                counter.tick()
            sessions = [first]
            runs = runs_within_event_budget(runs, len(first.function_events))
            counter.total = runs
            if runs > 1:
                with _native_stderr_silenced(), profile(use_kineto=True, use_cpu=True) as rest:
                    for _ in range(runs - 1):
                        subject(*inputs)
                        counter.tick()
                sessions.append(rest)
    finally:
        for handle in handles:
            handle.remove()
    if on_profiled is not None:
        on_profiled(sessions[-1])
    summary = summarize([s.function_events for s in sessions], runs, module_kinds, int8_modules, leaf_types)
    # two profiles (int8 and float) are two sessions, seconds apart: a ratio of their times varies between them as
    # much as between processes (qdoctor.gather.rounds), more when others were using the cores
    seen = conditions.contention  # busy before profiling: others kept at least one core busy (contention.plan)
    crowding = seen.load_average / max(seen.cores_allowed, 1)
    busy = seen.busy_cores_before >= contention.BUSY_CORE
    summary.between_sd = rounds.process_sd(busy, conditions.threads_used, crowding)
    return summary


MIN_PROFILED_RUNS = 3  # a median and a spread per module (QD023 compares layers with an interval)
SLOW_FORWARD_S = 1.0  # a forward this slow is profiled only as often as the budget allows


# Profiler events kept for one profile. Parsed, each is a FunctionEvent of a few kB: bert-base makes about 9,500 a
# call, and ten profiled calls added 0.3 GB to the check's peak memory (0.7x the float model) for no better shares.
EVENT_BUDGET = 30_000


def runs_within_event_budget(runs: int, events_per_run: int) -> int:
    """``runs``, or fewer when that many runs would make more than EVENT_BUDGET events (never fewer than
    MIN_PROFILED_RUNS when ``runs`` asked for that many: QD023 needs a spread)."""
    fitting = EVENT_BUDGET // max(1, events_per_run)
    return max(min(runs, MIN_PROFILED_RUNS), min(runs, fitting))


def profiled_runs(forward_s: float, budget_s: float) -> int:
    """Runs to profile: as many as fit ``budget_s`` (at most 10), and at least MIN_PROFILED_RUNS (a spread) unless
    one forward takes SLOW_FORWARD_S or more."""
    fitting = max(1, min(10, int(budget_s / max(forward_s, 1e-4))))
    if forward_s >= max(SLOW_FORWARD_S, budget_s):
        return fitting
    return max(MIN_PROFILED_RUNS, fitting)


def summarize(
    sessions: list[Any],
    runs: int,
    module_kinds: Mapping[str, str],
    int8_modules: set[str],
    leaf_types: Mapping[str, str],
) -> Profile:
    by_category: dict[str, float] = defaultdict(float)
    by_op: dict[str, list[Any]] = defaultdict(lambda: [0.0, 0, ""])
    by_module: dict[str, float] = defaultdict(float)
    module_calls: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (start, inclusive us) per call
    module_ops: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0, ""]))
    # each profiling session counts its times from its own start: later sessions' calls are ordered after earlier
    events = ((event, index * SESSION_OFFSET_US) for index, found in enumerate(sessions) for event in found)
    for event, offset in events:
        if event.name.startswith(SCOPE):
            by_module[event.name[len(SCOPE) :]] += event.cpu_time_total
            module_calls[event.name[len(SCOPE) :]].append((offset + _start_us(event), event.cpu_time_total))
            continue
        path = None
        inside_qdq = False  # the aten ops a decomposed quantize/dequantize (PT2E, torchao) is made of
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith(SCOPE):
                path = parent.name[len(SCOPE) :]
                break
            inside_qdq = inside_qdq or parent.name.startswith(_DECOMPOSED_QDQ_PARENTS)
            parent = parent.cpu_parent
        kind = module_kinds.get(path) if path is not None else None
        if path is not None and kind is None:
            kind = F.FLOAT
        category = (
            F.CAT_QDQ
            if inside_qdq
            else op_category(event.name, kind, path in int8_modules if path is not None else False)
        )
        self_us = event.self_cpu_time_total
        by_category[category] += self_us
        op = by_op[event.name]
        op[0] += self_us
        op[1] += 1
        op[2] = category
        if path is not None:
            inside = module_ops[path][event.name]
            inside[0] += self_us
            inside[1] += 1
            inside[2] = category
    total_us = sum(by_category.values()) or 1.0
    categories = [
        CategoryTime(c, by_category.get(c, 0.0) / runs / 1000.0, by_category.get(c, 0.0) / total_us)
        for c in F.CATEGORIES
    ]
    top_ops = sorted(
        (OpTime(name, v[2], v[0] / runs / 1000.0, round(v[1] / runs)) for name, v in by_op.items()),
        key=lambda o: -o.self_ms,
    )[:20]
    modules = sorted(
        (
            ModuleTime(
                path,
                leaf_types.get(path, ""),
                module_kinds.get(path, F.FLOAT),
                us / runs / 1000.0,
                ops=sorted(
                    (
                        OpTime(name, v[2], v[0] / runs / 1000.0, round(v[1] / runs))
                        for name, v in module_ops[path].items()
                    ),
                    key=lambda o: -o.self_ms,
                )[:MODULE_OPS_KEPT],
                run_ms=per_run_ms(module_calls[path], runs),
            )
            for path, us in by_module.items()
        ),
        key=lambda m: -m.total_ms,
    )
    return Profile(
        runs=runs, total_ms=total_us / runs / 1000.0, categories=categories, top_ops=top_ops, modules=modules
    )


SESSION_OFFSET_US = 1e12  # far beyond any session's length (11 days)


def _start_us(event: Any) -> float:
    time_range = getattr(event, "time_range", None)
    return float(getattr(time_range, "start", 0.0)) if time_range is not None else 0.0


def per_run_ms(calls: list[tuple[float, float]], runs: int) -> list[float]:
    """A module's time in each profiled run: its calls in start order, split into ``runs`` equal groups (a module
    called k times per forward has k * runs calls). Empty when the calls do not split evenly."""
    if runs < 1 or not calls or len(calls) % runs:
        return []
    per_run = len(calls) // runs
    ordered = [us for _, us in sorted(calls, key=lambda call: call[0])]
    return [sum(ordered[i * per_run : (i + 1) * per_run]) / 1000.0 for i in range(runs)]


def trace_file(trace_dir: str | Path, spec: str, role: str) -> Path:
    """Where the trace of one model goes, in the layout torch-tb-profiler reads: one run folder per model
    (``<target>-<role>``) holding ``<worker>.pt.trace.json``."""
    module, _, attribute = spec.rpartition(":")
    if spec.endswith(".py") or not module:
        name = Path(spec).stem  # a script: its file name
    else:
        name = f"{module}-{attribute}"  # package.module:attribute
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "model"
    return Path(trace_dir) / f"{safe}-{role}" / f"{TRACE_WORKER}.pt.trace.json"


def write_chrome_trace(prof: Any, destination: Path) -> str:
    """Export the profiler's Chrome trace (TensorBoard, Perfetto, chrome://tracing read it), atomically."""
    with atomic_path(destination) as temporary:
        prof.export_chrome_trace(str(temporary))
    return str(destination)
