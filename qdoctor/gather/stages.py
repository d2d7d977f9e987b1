"""The stages of gathering, in order: inventory, graph, (compile), trace, profiles, benchmarks, size, numerics,
flow. Each stage reads the facts of the stages before it; a stage that raises leaves its part None with the reason
in ``facts.unavailable`` and the time it took in ``facts.phase_seconds``."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from qdoctor import facts as F
from qdoctor.facts import Benchmarks, Facts, Numerics, Sizes, Trace
from qdoctor.facts.location import crash_info, exception_line
from qdoctor.facts.weights import UNKNOWN, Weights, overridden
from qdoctor.gather import (
    GatherOptions,
    OnStage,
    Progress,
    budget,
    environment,
    flows,
    graph,
    layer_numerics,
    modules,
    numerics,
    profile,
    progress,
    resources,
    size,
    timing,
    trace,
    weights,
)
from qdoctor.introspect.kinds import classify, eager_module
from qdoctor.introspect.state import quiet
from qdoctor.load.target import LoadedTarget

COUNT_RUNS_ABOVE_S = 0.05  # a forward pass this slow (traced) counts its benchmark runs in the progress shown


def _run_once(model: Any, inputs: tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return model(*inputs)


def _announcing_stages(progress: Progress, on_stage: OnStage | None, facts: Facts) -> Progress:
    """Each progress message starts a stage: hand ``on_stage`` the facts gathered so far, then report progress."""
    if on_stage is None:
        return progress

    def announce(message: str) -> None:
        on_stage(message, facts)
        progress(message)

    return announce


class Gathering:
    """One target's facts, gathered stage by stage. Use ``run()``."""

    def __init__(
        self,
        loaded: LoadedTarget,
        options: GatherOptions,
        progress: Progress,
        on_stage: OnStage | None,
        reuse: Facts | None = None,
    ):
        self.loaded, self.options, self.reuse = loaded, options, reuse
        self.target = loaded.target
        self.facts = Facts(
            target=loaded.target,
            environment=environment.gather_environment(loaded.user_engine, loaded.user_num_threads),
        )
        self.progress = _announcing_stages(progress, on_stage, self.facts)
        self.subject, self.baseline, self.inputs = loaded.subject, loaded.float_baseline, loaded.inputs
        # A torch.compile'd subject: facts about the model come from the module it wraps; profile and timing run the
        # compiled module itself, uncopied (a copy would compile again). TorchScript modules take no Python hooks.
        self.eager = eager_module(self.subject)
        self.compiled = self.eager is not self.subject
        self.scripted = isinstance(self.eager, torch.jit.ScriptModule)
        self.first_call: dict[str, Any] = {}  # a compiled subject's first call: its seconds, or its crash

    def run(self) -> Facts:
        self.inventory()
        self.weights()
        self.graph()
        if self.compiled:
            self.compile()
        self.trace()
        self.profiles()
        self.benchmarks()
        self.language_model()
        self.size()
        self.numerics()
        self.flow()
        if self.options.deploy is not None:
            self.deploy(self.options.deploy)
        else:  # no deployment asked for: its rules cannot apply (left out of the human-readable reports)
            self.facts.unavailable["deploy"] = "no deployment review asked for (--deploy executorch-xnnpack)"
            self.facts.not_applicable.append("deploy")
        return self.facts

    def attempt(self, part: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            with quiet(), resources.phase(part):
                return work()
        except Exception as exc:
            self.facts.unavailable[part] = exception_line(exc)
            return None
        finally:
            seconds = self.facts.phase_seconds
            seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - start

    @property
    def crashed(self) -> bool:
        return self.facts.trace is not None and self.facts.trace.crash is not None

    # ---- what the model is

    def inventory(self) -> None:
        facts, loaded, baseline = self.facts, self.loaded, self.baseline
        self.progress("inventory of modules")
        facts.modules = self.attempt("modules", lambda: modules.inventory(self.eager, loaded.origins, baseline))
        if baseline is not None and self.reuse is not None and self.reuse.float_modules is not None:
            facts.float_modules = self.reuse.float_modules
        elif baseline is not None:
            facts.float_modules = self.attempt("float_modules", lambda: modules.inventory(baseline, loaded.origins))
        else:
            facts.unavailable["float_modules"] = "no float baseline in the target"

    def weights(self) -> None:
        """Trained or not (gather/weights.py), from the float baseline, else the subject; --weights overrides."""
        model = self.baseline if self.baseline is not None else self.eager
        model = model if isinstance(model, torch.nn.Module) else None
        target, choice = self.target, self.options.weights
        found = self.attempt("weights", lambda: weights.weights_fact(model, target.substitutions, target.script_text))
        if found is None:
            found = Weights(UNKNOWN, f"could not be read: {self.facts.unavailable.get('weights', '')}")
        self.facts.weights = overridden(found, choice)

    def graph(self) -> None:
        facts = self.facts
        self.progress("reading the graph")
        facts.graph = self.attempt("graph", lambda: graph.graph_nodes(self.subject, self.target.file, classify))
        if facts.graph is None and "graph" not in facts.unavailable:
            facts.unavailable["graph"] = "the subject is an eager module tree, not a graph (FX, PT2E or TorchScript)"
            facts.not_applicable.append("graph")

    # ---- what it does when run

    def compile(self) -> None:
        self.progress("compiling the subject (torch.compile: its first call)")
        started = time.perf_counter()
        try:
            with quiet():
                _run_once(self.subject, self.inputs)
            self.first_call["seconds"] = time.perf_counter() - started
        except Exception as exc:
            self.first_call["crash"] = crash_info(exc, "run", self.target.file)

    def trace(self) -> None:
        facts, file = self.facts, self.target.file
        self.progress("tracing one forward pass")
        if self.scripted:
            facts.unavailable["trace"] = "a TorchScript module takes no Python hooks; its graph facts show what it runs"
            facts.not_applicable.append("trace")
            try:
                with quiet():
                    _run_once(self.subject, self.inputs)
            except Exception as exc:
                facts.trace = Trace(events=[], output=[], crash=crash_info(exc, "run", file))
        else:
            facts.trace = self.attempt("trace", lambda: trace.trace_model(self.eager, self.inputs, file))
        if "crash" in self.first_call:  # the eager module runs but its compiled form raises: that is what the user runs
            if facts.trace is None:
                facts.trace = Trace(events=[], output=[], crash=self.first_call["crash"])
            elif facts.trace.crash is None:
                facts.trace.crash = self.first_call["crash"]

    # ---- where the time goes, and how long it takes

    def _trace_exporter(self, role: str) -> Callable[[Any], None] | None:
        """Writes the profiler's trace of one model under options.trace_dir; a failure is a fact, not a crash."""
        trace_dir = self.options.trace_dir
        if trace_dir is None:
            return None

        def export(prof: Any) -> None:
            try:
                self.facts.trace_files[role] = profile.write_chrome_trace(
                    prof, profile.trace_file(trace_dir, self.target.spec, role)
                )
            except (OSError, RuntimeError) as exc:
                self.facts.unavailable[f"trace_{role}"] = exception_line(exc)

        return export

    def profiles(self) -> None:
        facts, options, baseline = self.facts, self.options, self.baseline
        if not options.profile:
            facts.unavailable["profile"] = facts.unavailable["float_profile"] = "profiling disabled (--no-profile)"
            return
        if self.crashed:
            facts.unavailable["profile"] = "the subject raised when run, so it cannot be profiled"
        else:
            self.progress("profiling the subject")
            kinds = {m.path: m.kind for m in facts.modules or []}
            events = facts.trace.events if facts.trace else []
            int8 = {e.module for e in events if e.kind == "module" and e.any_input_quantized}
            facts.profile = self.attempt(
                "profile",
                lambda: profile.profile_model(
                    self.subject,
                    self.inputs,
                    kinds,
                    int8,
                    budget_s=options.profile_budget,
                    on_profiled=self._trace_exporter("subject"),
                    copy_model=not self.compiled,
                ),
            )
        if baseline is None:
            facts.unavailable["float_profile"] = "no float baseline in the target"
            return
        if self.reuse is not None and self.reuse.float_profile is not None:
            facts.float_profile = self.reuse.float_profile
            return
        self.progress("profiling the float baseline")
        float_kinds = {m.path: m.kind for m in facts.float_modules or []}
        facts.float_profile = self.attempt(
            "float_profile",
            lambda: profile.profile_model(
                baseline,
                self.inputs,
                float_kinds,
                set(),
                budget_s=options.profile_budget,
                on_profiled=self._trace_exporter("float"),
            ),
        )

    def _profiled_call_s(self) -> float | None:
        """The slowest model's time per call as profiled (None: not profiled): it sets the benchmark's budget."""
        profiled = [p.total_ms / 1000 for p in (self.facts.profile, self.facts.float_profile) if p is not None]
        return max(profiled) if profiled else None

    def _subject_is_stateful(self) -> bool:
        """Running it changes it: observers, fake-quant and train-mode BatchNorm update their state on every
        forward (unknown modules count as stateful)."""
        found = self.facts.modules
        if found is None:
            return True
        return any(m.kind in (F.OBSERVER, F.FAKE_QUANT, F.QAT) or (m.training and m.is_leaf) for m in found)

    def benchmarks(self) -> None:
        facts, options, baseline, inputs = self.facts, self.options, self.baseline, self.inputs
        if not options.bench:
            facts.unavailable["benchmark"] = "timing disabled (--no-bench)"
            return
        subject_error = None
        variants: list[timing.Variant] = []
        if self.crashed:
            subject_error = "the subject raised when run"
        else:
            # A copy would repack int8 weights for the engine in force now, timing a different model than the
            # user's when the engine changed after convert; so the subject itself is timed unless running it
            # changes it. A copy of a compiled module would compile again.
            copy_model = self._subject_is_stateful() and not self.compiled
            try:
                variants.append(timing.Variant("subject", timing.model_run(self.subject, inputs, copy_model)))
            except Exception as exc:  # a model that cannot be copied to run safely (introspect/copies.py)
                subject_error = f"copying the subject to run it raised {exception_line(exc)}"
        if baseline is not None:
            variants.append(timing.Variant("float", timing.model_run(baseline, inputs)))
        if self.facts.phase_seconds.get("trace", 0.0) >= COUNT_RUNS_ABOVE_S:  # slow calls: say how many ran
            counter = progress.Counter()
            variants = [dataclasses.replace(v, run=progress.counted(v.run, counter)) for v in variants]
        if not variants:
            facts.benchmark = Benchmarks(subject=None, float_baseline=None, subject_error=subject_error)
            return
        names = " and ".join("the subject" if v.key == "subject" else "the float baseline" for v in variants)
        self.progress(f"benchmarking {names}" + (" in interleaved rounds" if len(variants) > 1 else ""))
        least, most = budget.rounds_for(self._profiled_call_s(), len(variants))
        result = self.attempt(
            "benchmark", lambda: timing.time_models(variants, options.bench_time, min_rounds=least, max_rounds=most)
        )
        if result is None:
            facts.benchmark = Benchmarks(subject=None, float_baseline=None, subject_error=subject_error)
            return
        if "subject" in result.errors:
            subject_error = f"timing the subject raised {exception_line(result.errors['subject'])}"
        if "float" in result.errors:
            facts.unavailable["benchmark_float"] = exception_line(result.errors["float"])
        speedup = result.ratio("float", "subject")
        facts.measurement = result.contention
        facts.benchmark = Benchmarks(
            subject=result.timing("subject"),
            float_baseline=result.timing("float"),
            subject_error=subject_error,
            paired_speedup=speedup,
        )

    def language_model(self) -> None:
        """A causal LM: its prompt (prefill) and one decode step timed apart (qdoctor.gather.language_model)."""
        call = self.loaded.language_model
        if call is None or self.crashed:
            return
        from qdoctor.gather.language_model import language_model_facts

        options = self.options
        self.facts.language_model = self.attempt(
            "language_model",
            lambda: language_model_facts(
                self.subject,
                self.baseline,
                call,
                options.bench_time,
                self.progress,
                bench=options.bench,
                per_call_s=self._profiled_call_s(),
            ),
        )

    # ---- size, accuracy, flow

    def size(self) -> None:
        baseline = self.baseline
        self.facts.size = self.attempt(
            "size",
            lambda: Sizes(
                subject_bytes=size.serialized_bytes(self.subject),
                float_bytes=(
                    self.reuse.size.float_bytes
                    if self.reuse is not None and self.reuse.size is not None
                    else size.serialized_bytes(baseline)
                    if baseline is not None
                    else None
                ),
            ),
        )

    def numerics(self) -> None:
        facts, baseline, subject, inputs = self.facts, self.baseline, self.subject, self.inputs
        if baseline is None:
            facts.unavailable["numerics"] = "no float baseline in the target"
            return
        if self.crashed:
            facts.unavailable["numerics"] = "the subject raised when run"
            return
        # The per-layer runs of the example inputs are forward passes of both models: their outputs give the output
        # SQNR too, so a big model runs twice less (a compiled subject runs as compiled: its own pass).
        per_layer = self.options.layer_numerics
        example: dict[str, Any] = {}
        found = None
        if per_layer:
            self.progress("measuring the error of each quantized layer")
            found = self.attempt(
                "layer_numerics",
                lambda: layer_numerics.layer_numerics(
                    self.eager,
                    baseline,
                    inputs,
                    layer_numerics.calibration_batches(
                        self.loaded.calibration_data, layer_numerics.MAX_CALIBRATION_BATCHES
                    ),
                    example_outputs=example if not self.compiled else None,
                ),
            )
        self.progress("comparing outputs with the float baseline")
        facts.numerics = self.attempt(
            "numerics",
            lambda: Numerics(
                sqnr_db=numerics.sqnr_db(
                    example["float"] if "float" in example else numerics.outputs(baseline, inputs),
                    example["subject"]
                    if "subject" in example
                    else _run_once(subject, inputs)
                    if self.compiled
                    else numerics.outputs(subject, inputs),
                )
            ),
        )
        example.clear()
        if facts.numerics is None or not per_layer:
            if facts.numerics is not None:
                facts.numerics.layers_note = "per-layer numerics disabled"
            return
        if found is not None:
            layers, seen, calibration_seen = found
            facts.numerics.layers = layers
            facts.numerics.inputs_seen, facts.numerics.calibration_batches_seen = seen, calibration_seen
            if not layers:
                facts.numerics.layers_note = layer_numerics.why_no_layers(self.eager)
            else:
                facts.numerics.layers_note = (
                    f"the example inputs plus {calibration_seen} calibration_data() batch(es)"
                    if calibration_seen
                    else "the example inputs (define calibration_data() to measure on real data too)"
                )
        else:
            facts.numerics.layers_note = f"per-layer numerics failed: {facts.unavailable.get('layer_numerics', '')}"
        evaluate = self.loaded.evaluate
        if evaluate is not None:
            self.progress("evaluate() on the subject and the float baseline")
            # one copy alive at a time: each is dropped when its evaluate() returns (a compiled model is not copied:
            # its copy would compile again)
            metrics = self.attempt(
                "evaluate",
                lambda: (
                    float(evaluate(subject if self.compiled else copy.deepcopy(subject))),
                    float(evaluate(copy.deepcopy(baseline))),
                ),
            )
            if metrics is not None:
                facts.numerics.metric_subject, facts.numerics.metric_float = metrics

    def flow(self) -> None:
        facts, loaded, target, subject = self.facts, self.loaded, self.target, self.subject
        facts.flow = self.attempt(
            "flow",
            lambda: flows.flow_info(
                subject,
                facts.graph,
                facts.modules,
                loaded.namespace,
                target.script_text,
                saved_format=loaded.saved_format,
                compile_source=loaded.origins.get(subject) if self.compiled else None,
                source=loaded.origins.get(self.eager),
                engine=facts.environment.quantized_engine,
                fx_configs=loaded.flow_steps.fx_configs() if loaded.flow_steps is not None else (None, None),
            ),
        )
        if facts.flow is not None and facts.flow.compiled is not None and "seconds" in self.first_call:
            facts.flow.compiled.first_call_s = self.first_call["seconds"]

    def deploy(self, target: str) -> None:
        from qdoctor.gather.deploy import gather_deployment

        options = self.options
        self.progress(f"lowering for {target} and timing in its runtime")
        self.facts.deploy = self.attempt(
            "deploy", lambda: gather_deployment(target, self.loaded, self.facts, options.bench, options.bench_time)
        )
