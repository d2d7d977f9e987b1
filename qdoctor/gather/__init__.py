"""Gather the facts about a loaded target, once. Each part that fails is marked unavailable with its reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qdoctor import facts as F
from qdoctor.facts import Benchmarks, Facts, Numerics, Sizes, Trace
from qdoctor.introspect.state import quiet

if TYPE_CHECKING:  # torch is imported where facts are gathered, so that GatherOptions is light (qdoctor.run.batch)
    from qdoctor.load.target import LoadedTarget

Progress = Callable[[str], None]
OnStage = Callable[[str, Facts], None]  # a stage begins; the facts gathered so far


@dataclass
class GatherOptions:
    bench: bool = True  # time the subject and the float baseline
    bench_time: float = 1.0  # seconds of timed runs per model (torch.utils.benchmark min_run_time)
    profile: bool = True
    profile_budget: float = 1.0  # seconds of profiled runs per model
    trace_dir: str | None = None  # also write each profiled model's Chrome trace here (torch-tb-profiler layout)


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


def _run_once(model: Any, inputs: tuple[Any, ...]) -> Any:
    import torch

    with torch.no_grad():
        return model(*inputs)


def gather_facts(
    loaded: LoadedTarget, options: GatherOptions, progress: Progress = lambda _: None, on_stage: OnStage | None = None
) -> Facts:
    import torch

    from qdoctor.facts.location import crash_info
    from qdoctor.gather import environment, flows, graph, modules, numerics, profile, size, timing, trace

    target = loaded.target
    facts = Facts(
        target=target, environment=environment.gather_environment(loaded.user_engine, loaded.user_num_threads)
    )
    progress = _announcing_stages(progress, on_stage, facts)
    subject, baseline, inputs = loaded.subject, loaded.float_baseline, loaded.inputs
    # A torch.compile'd subject: facts about the model come from the module it wraps; profile and timing run the
    # compiled module itself, uncopied (a copy would compile again). TorchScript modules take no Python hooks.
    eager = graph.eager_module(subject)
    compiled = eager is not subject
    scripted = isinstance(eager, torch.jit.ScriptModule)

    def attempt(part: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            with quiet():
                return work()
        except Exception as exc:
            facts.unavailable[part] = _reason(exc)
            return None
        finally:
            facts.phase_seconds[part] = facts.phase_seconds.get(part, 0.0) + time.perf_counter() - start

    progress("inventory of modules")
    facts.modules = attempt("modules", lambda: modules.inventory(eager, loaded.origins, baseline))
    if baseline is not None:
        facts.float_modules = attempt("float_modules", lambda: modules.inventory(baseline, loaded.origins))
    else:
        facts.unavailable["float_modules"] = "no float baseline in the target"

    progress("reading the graph")
    facts.graph = attempt("graph", lambda: graph.graph_nodes(subject, target.file, modules.classify))
    if facts.graph is None and "graph" not in facts.unavailable:
        facts.unavailable["graph"] = "the subject is an eager module tree, not a graph (FX, PT2E or TorchScript)"

    first_call: dict[str, Any] = {}
    if compiled:
        progress("compiling the subject (torch.compile: its first call)")
        started = time.perf_counter()
        try:
            with quiet():
                _run_once(subject, inputs)
            first_call["seconds"] = time.perf_counter() - started
        except Exception as exc:
            first_call["crash"] = crash_info(exc, "run", target.file)

    progress("tracing one forward pass")
    if scripted:
        facts.unavailable["trace"] = "a TorchScript module takes no Python hooks; its graph facts show what it runs"
        try:
            with quiet():
                _run_once(subject, inputs)
        except Exception as exc:
            facts.trace = Trace(events=[], output=[], crash=crash_info(exc, "run", target.file))
    else:
        facts.trace = attempt("trace", lambda: trace.trace_model(eager, inputs, target.file))
    if "crash" in first_call:  # the eager module runs but its compiled form raises: that is what the user runs
        if facts.trace is None:
            facts.trace = Trace(events=[], output=[], crash=first_call["crash"])
        elif facts.trace.crash is None:
            facts.trace.crash = first_call["crash"]
    crashed = facts.trace is not None and facts.trace.crash is not None
    kinds = {m.path: m.kind for m in facts.modules or []}
    int8 = {
        e.module for e in (facts.trace.events if facts.trace else []) if e.kind == "module" and e.any_input_quantized
    }

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
                    subject,
                    inputs,
                    kinds,
                    int8,
                    budget_s=options.profile_budget,
                    on_profiled=trace_exporter("subject"),
                    copy_model=not compiled,
                ),
            )
        if baseline is not None:
            progress("profiling the float baseline")
            float_kinds = {m.path: m.kind for m in facts.float_modules or []}
            facts.float_profile = attempt(
                "float_profile",
                lambda: profile.profile_model(
                    baseline,
                    inputs,
                    float_kinds,
                    set(),
                    budget_s=options.profile_budget,
                    on_profiled=trace_exporter("float"),
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
            stateful = (
                any(
                    m.kind in (F.OBSERVER, F.FAKE_QUANT, F.QAT) or (m.training and m.is_leaf)
                    for m in facts.modules or []
                )
                or facts.modules is None
            )
            stateful = stateful and not compiled  # a copy of a compiled module would compile again
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
                sqnr_db=numerics.sqnr_db(
                    numerics.outputs(baseline, inputs),
                    _run_once(subject, inputs) if compiled else numerics.outputs(subject, inputs),
                )
            ),
        )

    facts.flow = attempt(
        "flow",
        lambda: flows.flow_info(
            subject,
            facts.graph,
            facts.modules,
            loaded.namespace,
            target.script_text,
            saved_format=loaded.saved_format,
            compile_source=loaded.origins.get(subject) if compiled else None,
            source=loaded.origins.get(eager),
            engine=facts.environment.quantized_engine,
        ),
    )
    if facts.flow is not None and facts.flow.compiled is not None and "seconds" in first_call:
        facts.flow.compiled.first_call_s = first_call["seconds"]
    return facts


__all__ = ["GatherOptions", "gather_facts", "preserved_torch_state", "quiet", "F"]
