"""Gather the facts about a loaded target, once. Each part that fails is marked unavailable with its reason."""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from qdoctor import facts as F
from qdoctor.facts import Benchmarks, Facts, Numerics, Sizes

if TYPE_CHECKING:  # torch is imported where facts are gathered, so that GatherOptions is light (qdoctor.batch)
    from qdoctor.loader import LoadedTarget

Progress = Callable[[str], None]
OnStage = Callable[[str, Facts], None]  # a stage begins; the facts gathered so far


@dataclass
class GatherOptions:
    bench: bool = True  # time the subject and the float baseline
    bench_time: float = 1.0  # seconds of timed runs per model (torch.utils.benchmark min_run_time)
    profile: bool = True
    profile_budget: float = 1.0  # seconds of profiled runs per model
    trace_dir: str | None = None  # also write each profiled model's Chrome trace here (torch-tb-profiler layout)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The user's model may print or warn on every forward: keep that out of qdoctor's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Restore torch's process-global settings that a user's script or a counterfactual may change."""
    import torch

    engine = torch.backends.quantized.engine
    threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()
    rng = torch.random.get_rng_state()  # scripts seed and draw; qdoctor draws inputs and calibration data
    try:
        yield
    finally:
        torch.backends.quantized.engine = engine
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(default_dtype)
        torch.random.set_rng_state(rng)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}"


def _announcing_stages(progress: Progress, on_stage: OnStage | None, facts: Facts) -> Progress:
    """Each progress message starts a stage: hand ``on_stage`` the facts gathered so far, then report progress."""
    if on_stage is None:
        return progress

    def announce(message: str) -> None:
        on_stage(message, facts)
        progress(message)

    return announce


def gather_facts(
    loaded: LoadedTarget, options: GatherOptions, progress: Progress = lambda _: None, on_stage: OnStage | None = None
) -> Facts:
    from qdoctor.gather import environment, modules, numerics, profile, size, timing, trace

    target = loaded.target
    facts = Facts(target=target, environment=environment.gather_environment(loaded.user_engine, loaded.user_num_threads))
    progress = _announcing_stages(progress, on_stage, facts)
    subject, baseline, inputs = loaded.subject, loaded.float_baseline, loaded.inputs

    def attempt(part: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            with quiet():
                return work()
        except Exception as exc:  # noqa: BLE001 - a part that cannot be gathered is a fact, not a crash
            facts.unavailable[part] = _reason(exc)
            return None
        finally:
            facts.phase_seconds[part] = facts.phase_seconds.get(part, 0.0) + time.perf_counter() - start

    progress("inventory of modules")
    facts.modules = attempt("modules", lambda: modules.inventory(subject, loaded.origins, baseline))
    if baseline is not None:
        facts.float_modules = attempt("float_modules", lambda: modules.inventory(baseline, loaded.origins))
    else:
        facts.unavailable["float_modules"] = "no float baseline in the target"

    progress("tracing one forward pass")
    facts.trace = attempt("trace", lambda: trace.trace_model(subject, inputs, target.file))
    crashed = facts.trace is not None and facts.trace.crash is not None
    kinds = {m.path: m.kind for m in facts.modules or []}
    int8 = {e.module for e in (facts.trace.events if facts.trace else []) if e.kind == "module" and e.any_input_quantized}

    def trace_exporter(role: str) -> Callable[[Any], None] | None:
        """Writes the profiler's trace of one model under options.trace_dir; a failure is a fact, not a crash."""
        if options.trace_dir is None:
            return None

        def export(prof: Any) -> None:
            try:
                facts.trace_files[role] = profile.write_chrome_trace(
                    prof, profile.trace_file(options.trace_dir, target.spec, role)
                )
            except (OSError, RuntimeError) as exc:
                facts.unavailable[f"trace_{role}"] = _reason(exc)

        return export

    if not options.profile:
        facts.unavailable["profile"] = facts.unavailable["float_profile"] = "profiling disabled (--no-profile)"
    else:
        if crashed:
            facts.unavailable["profile"] = "the subject raised when run, so it cannot be profiled"
        else:
            progress("profiling the subject")
            facts.profile = attempt(
                "profile",
                lambda: profile.profile_model(
                    subject, inputs, kinds, int8, budget_s=options.profile_budget, on_profiled=trace_exporter("subject")
                ),
            )
        if baseline is not None:
            progress("profiling the float baseline")
            float_kinds = {m.path: m.kind for m in facts.float_modules or []}
            facts.float_profile = attempt(
                "float_profile",
                lambda: profile.profile_model(
                    baseline, inputs, float_kinds, set(), budget_s=options.profile_budget, on_profiled=trace_exporter("float")
                ),
            )
        else:
            facts.unavailable["float_profile"] = "no float baseline in the target"

    if options.bench:
        subject_timing = float_timing = None
        subject_error = None
        if crashed:
            subject_error = "the subject raised when run"
        else:
            progress("benchmarking the subject")
            # A copy would repack int8 weights for the engine in force now, timing a different model than the
            # user's when the engine changed after convert; so the subject itself is timed unless running it
            # changes it (observers, fake-quant, train-mode BatchNorm update their state on every forward).
            stateful = any(
                m.kind in (F.OBSERVER, F.FAKE_QUANT, F.QAT) or (m.training and m.is_leaf) for m in facts.modules or []
            ) or facts.modules is None
            subject_timing = attempt(
                "benchmark", lambda: timing.time_model(subject, inputs, options.bench_time, copy_model=stateful)
            )
        if baseline is not None:
            progress("benchmarking the float baseline")
            float_timing = attempt("benchmark", lambda: timing.time_model(baseline, inputs, options.bench_time))
        facts.benchmark = Benchmarks(subject=subject_timing, float_baseline=float_timing, subject_error=subject_error)
    else:
        facts.unavailable["benchmark"] = "timing disabled (--no-bench)"

    facts.size = attempt(
        "size",
        lambda: Sizes(
            subject_bytes=size.serialized_bytes(subject),
            float_bytes=size.serialized_bytes(baseline) if baseline is not None else None,
        ),
    )

    if baseline is None:
        facts.unavailable["numerics"] = "no float baseline in the target"
    elif crashed:
        facts.unavailable["numerics"] = "the subject raised when run"
    else:
        progress("comparing outputs with the float baseline")
        facts.numerics = attempt(
            "numerics",
            lambda: Numerics(
                sqnr_db=numerics.sqnr_db(numerics.outputs(baseline, inputs), numerics.outputs(subject, inputs))
            ),
        )
    return facts


__all__ = ["GatherOptions", "gather_facts", "preserved_torch_state", "quiet", "F"]
