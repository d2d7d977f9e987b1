"""qdoctor in Python: check a model object you hold (a notebook, a test), a script, or compare recipes on a float model.

The same facts, rules and verified fixes as `qdoctor check` and `qdoctor compare`; the result is a :class:`Report`
(or a :class:`CompareResult`) instead of printed text: the pipeline's plain data, with its formats.
Bad input raises a subclass of :class:`qdoctor.errors.TargetError` with one line written for you:
:class:`~qdoctor.errors.NotAModuleError`, :class:`~qdoctor.errors.InputsDoNotFitError`,
:class:`~qdoctor.errors.FloatSubjectError`, :class:`~qdoctor.errors.OptionError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdoctor.compare import result as compared
from qdoctor.errors import OptionError, TargetError
from qdoctor.report import model

if TYPE_CHECKING:  # torch is imported when a check runs, not when `import qdoctor.api` runs
    from torch import nn

    from qdoctor.run.check import CheckOptions

DEFAULT_TIMEOUT = 300.0


class Report(model.Report):
    """What one check found (qdoctor.report.model.Report), with its formats: ``to_dict``/``to_json``, ``to_markdown``,
    ``to_sarif`` and ``to_html`` give the CLI's formats; in Jupyter the report shows itself as HTML (self-contained:
    inline style and SVG, no script, no network). The renderers are qdoctor.report.render's: the data type itself
    knows none of them."""

    @classmethod
    def of(cls, report: model.Report) -> Report:
        """The same report (the same objects, not copies), with its formats."""
        return cls(**{f.name: getattr(report, f.name) for f in fields(report)})

    def to_json(self) -> str:
        """``qdoctor check --format json``."""
        return self._render("json")

    def to_markdown(self, root: str | None = None) -> str:
        """``--format markdown``: pastes into a GitHub issue. ``root``: paths under it are shown relative to it
        (default: the current directory)."""
        return self._render("markdown", root=root)

    def to_sarif(self, root: str | None = None) -> str:
        """``--format sarif`` (SARIF 2.1.0, for code scanning). ``root``: the directory result paths are relative to
        (default: the current directory)."""
        return self._render("sarif", root=root)

    def to_html(self, root: str | None = None) -> str:
        """``--format html``: one self-contained page (inline CSS and SVG, no script, no network)."""
        return self._render("html", root=root)

    def _repr_html_(self) -> str:
        """Jupyter's inline view: the HTML report as one ``<div>`` whose style applies only inside it."""
        from qdoctor.report.render.html_report import render_fragment

        return render_fragment(self)

    def _render(self, output_format: str, **options: Any) -> str:
        from qdoctor.report.render import OutputFormat, render

        return render(self, OutputFormat(output_format), **options)


class CompareResult(compared.CompareResult):
    """What `qdoctor compare` found (qdoctor.compare.result.CompareResult), with its formats (qdoctor.compare.reporters):
    ``to_dict``/``to_json``, ``to_markdown``, ``to_html``, and the HTML view in Jupyter."""

    @classmethod
    def of(cls, result: compared.CompareResult) -> CompareResult:
        """The same result (the same objects, not copies), with its formats."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)})

    def to_json(self) -> str:
        return self._render("json")

    def to_markdown(self) -> str:
        return self._render("markdown")

    def to_html(self) -> str:
        """One self-contained page (inline CSS and SVG, no script, no network)."""
        return self._render("html")

    def _repr_html_(self) -> str:
        """Jupyter's inline view: the HTML report as one ``<div>`` whose style applies only inside it."""
        from qdoctor.compare.reporters.html_report import render_fragment

        return render_fragment(self)

    def _render(self, output_format: str) -> str:
        from qdoctor.compare.reporters import CompareFormat, render

        return render(self, CompareFormat(output_format))


def _codes(values: str | Iterable[str] | None, argument: str) -> list[str] | None:
    from qdoctor.config import ConfigError, rule_codes

    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    try:
        return rule_codes(list(values), argument)
    except ConfigError as exc:
        raise OptionError(str(exc)) from None


def _fail_level(value: str) -> str:
    from qdoctor.config import ConfigError, fail_level

    try:
        return fail_level(value, "fail_on")
    except ConfigError as exc:
        raise OptionError(str(exc)) from None


def _bench_time(value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise OptionError(f"bench_time must be a positive number of seconds, not {value!r}")
    return float(value)


def _weights(value: str) -> str:
    from qdoctor.facts.weights import WEIGHTS_CHOICES

    if value not in WEIGHTS_CHOICES:
        raise OptionError(f"weights must be one of {', '.join(WEIGHTS_CHOICES)}, not {value!r}")
    return value


def check_options(
    *,
    bench: bool = True,
    bench_time: float = 1.0,
    profile: bool = True,
    verify: bool = True,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    rounds: int = 3,
    weights: str = "auto",
) -> CheckOptions:
    """The options of a check (the CLI's ``--bench``, ``--bench-time``, ``--profile``, ``--verify``, ``--select``,
    ``--ignore``, ``--rounds``, ``--weights``), validated: a bad value raises OptionError."""
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions

    seconds = _bench_time(bench_time)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise OptionError(f"rounds must be a whole number of treatment rounds, 1 or more, not {rounds!r}")
    return CheckOptions(
        gather=GatherOptions(
            bench=bool(bench),
            bench_time=seconds,
            profile=bool(profile),
            profile_budget=seconds,
            weights=_weights(weights),
        ),
        select=_codes(select, "select"),
        ignore=_codes(ignore, "ignore"),
        verify=bool(verify),
        rounds=rounds,
    )


def check_model(
    model: nn.Module,
    example_inputs: Any,
    *,
    float_model: nn.Module | None = None,
    calibration_data: Callable[[], Iterable[Any]] | Iterable[Any] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    bench: bool = True,
    verify: bool = True,
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
    fail_on: str = "warning",
    bench_time: float = 1.0,
    profile: bool = True,
    rounds: int = 3,
    weights: str = "auto",
) -> Report:
    """Check a quantized model you hold: measure it, run every rule, verify the fixes; return the Report.

    ``model`` is the quantized (or prepared, or QAT) model, ``example_inputs`` a tensor or a tuple of tensors for
    ``model(*example_inputs)``, ``float_model`` the float model it came from (the baseline for speedup and SQNR, and
    what verified fixes rebuild from). ``calibration_data`` (a function returning batches, or an iterable of them)
    calibrates the rebuilt models as a script's ``calibration_data()`` does; ``evaluate(model) -> accuracy`` is
    accepted as in a script, though no check rule uses it today (``compare_model`` does). ``select``/``ignore`` take rule codes or prefixes
    (``"QD002"``, ``["QD00"]``), ``fail_on`` (error|warning|info|never) decides ``Report.ok``. ``bench_time`` is the
    seconds of timed runs per model; ``bench=False`` skips timing, ``verify=False`` the verified fixes. ``rounds``
    is the budget of treatment rounds: while the fixed model is still slower than float or below the SQNR floor, it
    is examined and treated again (``Report.treatment``; 1 stops after the first fix-all). ``weights``
    (auto|trained|untrained, the CLI's ``--weights``) overrides the detection of untrained weights, on which accuracy
    is not judged.

    **The model runs in this process** (unlike `qdoctor check`, which runs a script in a separate worker process): a
    model that hangs or crashes the interpreter takes this process with it. Your objects are not changed: the model
    runs under ``torch.no_grad()``, anything that changes a model (tracing hooks, observers, fixes) works on
    ``copy.deepcopy`` copies, and torch's global state (quantized engine, threads, grad mode, default dtype, RNG) is
    restored afterwards.

    Raises NotAModuleError (``model`` or ``float_model`` is not an ``nn.Module``), InputsDoNotFitError (not tensors,
    or a layer rejects their shape), FloatSubjectError (nothing in ``model`` is quantized: use ``compare_model``) or
    OptionError (a bad option), all subclasses of ``qdoctor.errors.TargetError``. A model that raises when run is a
    finding (a diagnosis), not an exception.
    """
    from qdoctor.introspect.state import preserved_torch_state
    from qdoctor.load.live import live_target
    from qdoctor.run.check import check_loaded

    level = _fail_level(fail_on)
    options = check_options(
        bench=bench,
        bench_time=bench_time,
        profile=profile,
        verify=verify,
        select=select,
        ignore=ignore,
        rounds=rounds,
        weights=weights,
    )
    with preserved_torch_state():
        loaded = live_target(
            model, example_inputs, float_model=float_model, calibration_data=calibration_data, evaluate=evaluate
        )
        report = Report.of(check_loaded(loaded, options))
    report.fail_on = level
    return report


def check(
    target: str,
    *,
    bench: bool = True,
    verify: bool = True,
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
    fail_on: str | None = None,
    bench_time: float = 1.0,
    profile: bool = True,
    trust: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    rounds: int = 3,
    weights: str = "auto",
) -> Report:
    """Check a target as `qdoctor check TARGET` does and return its Report.

    ``target`` is a model script (``model.py``), ``package.module:attribute`` or a saved model (``.pt`` TorchScript,
    ``.pt2`` ExportedProgram; a pickled full model only with ``trust=True``, since unpickling runs code). The script
    runs in a separate worker process, as on the command line: a script that hangs is stopped after ``timeout``
    seconds, one that crashes the process still gives a report of what was gathered. ``[tool.qdoctor]`` in the
    nearest pyproject.toml applies; the options given here override it. Other options as in :func:`check_model`.

    Raises TargetError (and its subclasses) when the target cannot be checked at all, with the CLI's one line.
    """
    from qdoctor import config as settings_file
    from qdoctor.run.batch import check_targets

    if not isinstance(target, str):
        kind = type(target).__name__
        hint = " (a model object: use qdoctor.check_model(model, example_inputs))" if hasattr(target, "forward") else ""
        raise OptionError(f"target must be a path or package.module:attribute string, got a {kind}{hint}")
    if Path(target).is_dir():
        raise OptionError(f"{target} is a directory: check one model file at a time (the CLI checks folders)")
    try:
        settings = settings_file.resolve(
            target, select=_codes(select, "select"), ignore=_codes(ignore, "ignore"), fail_on=fail_on
        )
    except settings_file.ConfigError as exc:
        raise OptionError(str(exc)) from None
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise OptionError(f"timeout must be a positive number of seconds, not {timeout!r}")
    options = check_options(
        bench=bench, bench_time=bench_time, profile=profile, verify=verify, rounds=rounds, weights=weights
    )
    options.select, options.ignore = settings.select, settings.ignore
    options.per_module_ignores = settings.per_module_ignores
    options.trust = trust
    outcomes = check_targets([target], options, jobs=1, timeout=float(timeout))
    if not outcomes:
        raise TargetError(f"{target}: no model file to check")
    outcome = outcomes[0]
    if outcome.report is None:
        reason = outcome.reason or outcome.status
        raise TargetError(reason if target in reason else f"{target}: {reason}")
    report = Report.of(outcome.report)
    report.fail_on = settings.fail_on
    return report


def compare_model(
    float_model: nn.Module,
    example_inputs: Any,
    *,
    calibration_data: Callable[[], Iterable[Any]] | Iterable[Any] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    recipes: str | None = None,
    max_drop: float = 1.0,
    min_sqnr_db: float = 20.0,
    min_speedup: float = 1.1,
    bench_time: float = 1.0,
    weights: str = "auto",
) -> CompareResult:
    """Quantize ``float_model`` every sensible way, measure each recipe on this machine, recommend one
    (`qdoctor compare`). ``recipes`` takes the CLI's ``--recipes`` (``"fx-x86,dynamic"``, ``"all"``); the
    recommendation is the fastest recipe at least ``min_speedup`` times faster than fp32 whose ``evaluate()`` drops at
    most ``max_drop`` points (or, without ``evaluate``, whose SQNR is at least ``min_sqnr_db``). On untrained weights
    (detected, or ``weights="untrained"``) accuracy is not judged and the fastest recipe is recommended by speed.

    **Runs in this process.** Every recipe is built on a ``copy.deepcopy`` of ``float_model``, which is not changed;
    torch's global state is restored afterwards. Raises the TargetError subclasses of :func:`check_model`
    (a quantized model as ``float_model`` is an OptionError).
    """
    from qdoctor.compare.core import CompareOptions, compare_loaded
    from qdoctor.compare.result import Limits
    from qdoctor.introspect.state import preserved_torch_state
    from qdoctor.load.live import live_float_target

    options = CompareOptions(
        recipes=recipes,
        limits=Limits(max_drop=float(max_drop), min_sqnr_db=float(min_sqnr_db), min_speedup=float(min_speedup)),
        bench_time=_bench_time(bench_time),
        weights=_weights(weights),
    )
    with preserved_torch_state():
        loaded = live_float_target(float_model, example_inputs, calibration_data=calibration_data, evaluate=evaluate)
        return CompareResult.of(compare_loaded(loaded, options))


__all__ = ["CompareResult", "Report", "check", "check_model", "check_options", "compare_model"]
