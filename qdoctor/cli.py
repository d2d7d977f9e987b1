"""The `qdoctor` command line: a thin typer shell over qdoctor.run.check. Must not import torch at module level."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from qdoctor import __version__
from qdoctor.report.render import OutputFormat

if TYPE_CHECKING:
    from rich.console import Console

    from qdoctor.report.model import Report
    from qdoctor.run.batch import Outcome
    from qdoctor.run.check import CheckOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="A doctor for slow or broken quantized PyTorch models.",
    rich_markup_mode=None,
)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    from rich.markup import escape

    # escaped: messages quote user text and TOML tables ("[tool.qdoctor]"); soft_wrap: one line, never re-wrapped
    _stderr().print(f"[bold red]qdoctor:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """A doctor for slow or broken quantized PyTorch models."""


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip().upper() for item in values for v in item.split(",") if v.strip()]


# How the script runs, shared by `check` and `compare` (qdoctor.load.options.LoadOptions).
STOP_ON_ERROR = typer.Option(
    False,
    "--stop-on-error",
    help="Stop the script at its first error (default: run every top-level statement and report each error).",
)
STAND_INS = typer.Option(
    True,
    "--stand-ins/--no-stand-ins",
    help="Offline stand-ins for what this machine lacks: pretrained weights and checkpoints (random weights), "
    "datasets (FakeData), CUDA (CPU). Listed in the report; valid for speed, not accuracy.",
)
WEIGHTS = typer.Option(
    "auto",
    "--weights",
    help="auto: detect whether the weights are trained; trained | untrained: say so. On untrained weights accuracy "
    "is not judged (no QD020/QD021, compare recommends by speed); speed findings hold.",
)
DEPLOY = typer.Option(None, "--deploy", help="Also lower for and time in: executorch-xnnpack (a .pte implies it).")


def _deploy_choice(value: str | None) -> str | None:
    from qdoctor.flows import deploy_targets  # imports torch: only when --deploy is given

    if value is not None and value not in deploy_targets():
        raise _fail(f"--deploy must be one of {', '.join(deploy_targets())}, not {value!r}")
    return value


def _weights_choice(value: str) -> str:
    from qdoctor.facts.weights import WEIGHTS_CHOICES

    if value not in WEIGHTS_CHOICES:
        raise _fail(f"--weights must be one of {', '.join(WEIGHTS_CHOICES)}, not {value!r}")
    return value


@app.command()
def check(
    targets: list[str] = typer.Argument(
        ...,
        help="model.py files, directories of them, package.module:attribute, saved models (.pt TorchScript, "
        ".pt2 ExportedProgram), ExecuTorch programs (.pte), or bug reports (issue.md, post.txt; - reads stdin)",
        show_default=False,
    ),
    output_format: OutputFormat = typer.Option(OutputFormat.terminal, "--format", "-f", help="Report format."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to this file (atomically)."),
    fail_on: str | None = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above: error|warning|info|never (default: warning)."
    ),
    exit_zero: bool | None = typer.Option(
        None, "--exit-zero/--no-exit-zero", help="Exit 0 even when there are findings."
    ),
    select: list[str] | None = typer.Option(None, "--select", help="Rule codes or prefixes to run (QD002,QD00)."),
    ignore: list[str] | None = typer.Option(None, "--ignore", help="Rule codes or prefixes to skip."),
    config: Path | None = typer.Option(
        None, "--config", help="pyproject.toml to read [tool.qdoctor] from (default: the nearest one above the model)."
    ),
    trace_dir: Path | None = typer.Option(
        None, "--trace-dir", help="Write the profiler traces of subject and float baseline here (tensorboard --logdir)."
    ),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time the subject and the float baseline."),
    bench_time: float = typer.Option(1.0, "--bench-time", min=0.05, help="Seconds of timed runs per model."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profile with torch.profiler."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Apply each fix to a copy and measure it."),
    rounds: int = typer.Option(
        3, "--rounds", min=1, help="Treatment rounds: examine the fixed model again while it is still ill (1: once)."
    ),
    save_fixed: Path | None = typer.Option(
        None, "--save-fixed", help="Write the 'fix all' model here (TorchScript, else state_dict + rebuild code)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, help="Targets checked in parallel (default: the number of cores)."
    ),
    timeout: float = typer.Option(
        300.0, "--timeout", min=1.0, help="Seconds a target's check may run (after start-up) before it is stopped."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and the stacks of crashed checks."),
    trust: bool = typer.Option(
        False, "--trust", help="Allow a pickled full model (torch.save(model)) as TARGET: unpickling runs code from it."
    ),
    stop_on_error: bool = STOP_ON_ERROR,
    stand_ins: bool = STAND_INS,
    weights: str = WEIGHTS,
    deploy: str | None = DEPLOY,
) -> None:
    """Diagnose quantized models: measure them, find every cause of slowness or breakage, suggest fixes.

    Each target is checked in its own process: a script that hangs, exits or crashes the process still gives a
    report (exit code 2, with what was gathered before).
    """

    from qdoctor.gather import GatherOptions
    from qdoctor.load.options import LoadOptions
    from qdoctor.run.check import CheckOptions

    options = CheckOptions(
        gather=GatherOptions(
            bench=bench,
            bench_time=bench_time,
            profile=profile,
            trace_dir=str(trace_dir) if trace_dir else None,
            weights=_weights_choice(weights),
            deploy=_deploy_choice(deploy) if deploy is not None else None,
        ),
        select=_split(select),
        ignore=_split(ignore),
        verify=verify,
        rounds=rounds,
        save_fixed=str(save_fixed) if save_fixed is not None else None,
        trust=trust,
        load=LoadOptions(keep_going=not stop_on_error, stand_ins=stand_ins),
    )
    run = CheckRun(
        output_format=output_format,
        output=output,
        fail_on=fail_on,
        exit_zero=exit_zero,
        config=config,
        jobs=jobs,
        timeout=timeout,
        debug=debug,
    )
    with _stdin_report(targets) as targets:
        _check(targets, options, run)


@dataclass(frozen=True)
class CheckRun:
    """How the command line runs the checks and hands back their reports (what the runner's CheckOptions does not
    hold): the format and where it goes, the exit-code settings, the configuration file, parallelism, --debug."""

    output_format: OutputFormat = OutputFormat.terminal
    output: Path | None = None
    fail_on: str | None = None  # None: [tool.qdoctor], else "warning"
    exit_zero: bool | None = None
    config: Path | None = None  # the pyproject.toml to read (None: the nearest one above the first target)
    jobs: int | None = None
    timeout: float = 300.0
    debug: bool = False


def _check(targets: list[str], options: CheckOptions, run: CheckRun) -> None:
    from qdoctor import config as settings_file

    try:
        # [tool.qdoctor] is looked up from the first target (several targets share one configuration).
        settings = settings_file.resolve(
            targets[0],
            config=run.config,
            select=options.select,
            ignore=options.ignore,
            fail_on=run.fail_on,
            exit_zero=run.exit_zero,
        )
    except settings_file.ConfigError as exc:
        raise _fail(str(exc)) from None
    options = dataclasses.replace(
        options, select=settings.select, ignore=settings.ignore, per_module_ignores=settings.per_module_ignores
    )
    several = len(targets) > 1 or Path(targets[0]).is_dir()
    trace_dir = Path(options.gather.trace_dir) if options.gather.trace_dir is not None else None
    if trace_dir is not None:
        if not options.gather.profile:
            raise _fail("--trace-dir writes the profiler's traces: it cannot be used with --no-profile")
        try:
            trace_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"--trace-dir: cannot create {trace_dir}: {exc.strerror or exc}") from None
    if several and run.output_format == OutputFormat.html:
        raise _fail("--format html writes one report per file: check one target at a time (or use markdown)")
    if options.save_fixed is not None:
        save_fixed = Path(options.save_fixed)
        if not options.verify:
            raise _fail("--save-fixed saves the verified 'fix all' model: drop --no-verify")
        if several:
            raise _fail("--save-fixed takes a single target")
        if not save_fixed.resolve().parent.is_dir():
            raise _fail(f"--save-fixed: no such directory: {save_fixed.resolve().parent}")
    from qdoctor.run.batch import check_targets, worst_exit_code
    from qdoctor.run.progress_display import progress_shown

    console = _stderr()
    try:
        with console.status("checking", spinner="dots") as status:
            outcomes = check_targets(
                targets,
                options,
                jobs=run.jobs,
                timeout=run.timeout,
                on_progress=progress_shown(console, lambda text: status.update(text)),
            )
    except Exception as exc:
        if run.debug:
            raise
        raise _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)") from None
    for outcome in outcomes:  # a report read from stdin is named "-", not by its temporary file
        if _is_stdin_file(outcome.spec):
            outcome.spec = "-"
            if outcome.report is not None:
                outcome.report.facts.target.spec = "-"
    _explain(outcomes, run.debug, console)
    output = run.output
    text = _render(outcomes, several, run.output_format, settings.fail_on, settings.exit_zero, color=output is None)
    if output is not None and (several or outcomes[0].report is not None):  # nothing checked: leave no file
        from qdoctor.files import write_text_atomic

        try:
            write_text_atomic(output, text)
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    elif output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    for outcome in outcomes:
        if outcome.report is not None:
            _after_report(outcome.report, trace_dir, console)
    raise typer.Exit(worst_exit_code(outcomes, settings.fail_on, settings.exit_zero))


STDIN_NAME = "stdin.md"


@contextlib.contextmanager
def _stdin_report(targets: list[str]) -> Iterator[list[str]]:
    """``-`` among the targets: the report read from standard input, saved to a temporary ``stdin.md`` (each target
    is checked in its own process, which reads a file) and removed afterwards."""
    if "-" not in targets:
        yield targets
        return
    if targets.count("-") > 1:
        raise _fail("- (standard input) can be given once")
    if sys.stdin is None or sys.stdin.isatty():
        raise _fail(
            "-: nothing on standard input (pipe a report into it: gh issue view N --json body -q .body | qdoctor check -)"
        )
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise _fail("-: the report on standard input is empty")
    with tempfile.TemporaryDirectory(prefix="qdoctor-stdin-") as folder:
        path = Path(folder) / STDIN_NAME
        path.write_bytes(data)
        yield [str(path) if t == "-" else t for t in targets]


def _is_stdin_file(spec: str) -> bool:
    path = Path(spec)
    return path.name == STDIN_NAME and path.parent.name.startswith("qdoctor-stdin-")


def _after_report(report: Report, trace_dir: Path | None, console: Console) -> None:
    """Side notes on stderr: where traces and the fixed model were written."""
    if trace_dir is not None:
        from qdoctor.report.render.common import trace_lines

        for line in trace_lines(report.facts, str(trace_dir)):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    saved = report.extras.get("saved_fixed")
    if saved is not None:
        if saved.get("saved"):
            console.print(
                f"qdoctor: saved the fixed model to {saved['path']} ({saved['format']})", highlight=False, markup=False
            )
        elif saved.get("error"):
            raise _fail(f"--save-fixed: could not write {saved['path']}: {saved['error']}")
        else:
            console.print(
                f"qdoctor: nothing saved to {saved['path']}: {saved.get('reason', '')}", highlight=False, markup=False
            )


def _explain(outcomes: list[Outcome], debug: bool, console: Console) -> None:
    """One line on stderr for each target that could not be checked or is not quantized (the report says more)."""
    from rich.text import Text

    from qdoctor.facts.location import display_path
    from qdoctor.run.batch import CHECKED
    from qdoctor.run.summary import not_quantized

    def say(line: str, style: str = "bold red") -> None:
        console.print(Text.assemble(("qdoctor: ", style), line), soft_wrap=True)

    for outcome in outcomes:
        spec = display_path(outcome.spec)
        if not_quantized(outcome):
            say(
                f"{spec}: the model is not quantized: nothing to diagnose; "
                f"run `qdoctor compare {spec}` to choose a quantization recipe",
                style="bold yellow",
            )
        elif outcome.status != CHECKED and outcome.reason and outcome.exit_code() == 2:
            say(outcome.reason if outcome.spec in outcome.reason else f"{spec}: {outcome.reason}")
            if debug and outcome.debug:
                console.print(Text(outcome.debug), soft_wrap=True)


def _render(
    outcomes: list[Outcome], several: bool, output_format: OutputFormat, fail_on: str, exit_zero: bool, color: bool
) -> str:
    from qdoctor.report.render import render
    from qdoctor.run.summary import render_json, render_table

    color = color and output_format == OutputFormat.terminal and sys.stdout.isatty()
    root = str(Path.cwd())
    if not several:
        report = outcomes[0].report
        return render(report, output_format, color=color, root=root) if report is not None else ""
    if output_format == OutputFormat.json:
        return render_json(outcomes, fail_on, exit_zero)
    if output_format == OutputFormat.sarif:
        import json

        logs = [json.loads(render(o.report, output_format, root=root)) for o in outcomes if o.report is not None]
        if not logs:
            return ""
        merged = logs[0]
        merged["runs"] = [run for log in logs for run in log["runs"]]  # SARIF: one run per checked model
        return json.dumps(merged, indent=2) + "\n"
    reports = [render(o.report, output_format, color=color, root=root) for o in outcomes if o.report is not None]
    return "\n".join([*reports, render_table(outcomes, fail_on, exit_zero, color=color)])


@app.command()
def compare(
    target: str = typer.Argument(
        ...,
        help="model.py (float model, example inputs; optional calibration_data(), evaluate()), or a bug report "
        "(issue.md, post.txt; - reads one from stdin)",
    ),
    recipes: str | None = typer.Option(
        None,
        "--recipes",
        help="Comma-separated recipes (fx-x86, eager-qnnpack, dynamic-fbgemm, pt2e-x86, ...), flows (fp32, dynamic, "
        "eager, fx, pt2e), 'default' or 'all'. Default: fp32, dynamic and eager on this CPU's engine, FX on every engine.",
    ),
    max_drop: float = typer.Option(1.0, "--max-drop", min=0.0, help="Largest accepted drop of evaluate(), in points."),
    min_sqnr: float = typer.Option(
        20.0, "--min-sqnr", help="Smallest accepted SQNR vs fp32 in dB (used without evaluate())."
    ),
    min_speedup: float = typer.Option(
        1.1, "--min-speedup", min=0.0, help="Recommend int8 only if at least this much faster."
    ),
    output_format: str = typer.Option("terminal", "--format", "-f", help="terminal | json | markdown | html"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to this file instead of stdout."),
    bench_time: float = typer.Option(1.0, "--bench-time", min=0.05, help="Seconds of timed runs per recipe."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of qdoctor's own errors."),
    stop_on_error: bool = STOP_ON_ERROR,
    stand_ins: bool = STAND_INS,
    weights: str = WEIGHTS,
    deploy: str | None = DEPLOY,
) -> None:
    """Quantize a float model with each recipe, measure latency, size and accuracy, and recommend one."""
    from qdoctor.compare.reporters import CompareFormat

    try:
        fmt = CompareFormat(output_format)
    except ValueError:
        raise _fail(
            f"--format must be one of {', '.join(f.value for f in CompareFormat)}, not {output_format!r}"
        ) from None
    console = _stderr()
    from qdoctor.compare import CompareOptions, Limits
    from qdoctor.compare import compare as run_compare
    from qdoctor.compare.reporters import render
    from qdoctor.errors import TargetError
    from qdoctor.load.options import LoadOptions

    options = CompareOptions(
        recipes=recipes,
        limits=Limits(max_drop=max_drop, min_sqnr_db=min_sqnr, min_speedup=min_speedup),
        bench_time=bench_time,
        load=LoadOptions(keep_going=not stop_on_error, stand_ins=stand_ins),
        weights=_weights_choice(weights),
        deploy=_deploy_choice(deploy) if deploy is not None else None,
    )
    try:
        with console.status("comparing", spinner="dots") as status, _stdin_report([target]) as (spec,):
            result = run_compare(spec, options, progress=lambda msg: status.update(msg))
    except TargetError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        if debug:
            raise
        raise _fail(f"internal error comparing {target}: {type(exc).__name__}: {exc} (rerun with --debug)") from None
    if debug:
        for candidate in result.candidates:
            if candidate.traceback:
                console.print(
                    f"[bold]{candidate.recipe}[/] failed:\n{candidate.traceback}", highlight=False, markup=True
                )
    color = fmt.value == "terminal" and output is None and sys.stdout.isatty()
    text = render(result, fmt, color=color)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from qdoctor.files import write_text_atomic

    try:
        write_text_atomic(output, text)  # a failed write never leaves a half-written report behind
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    console.print(f"wrote {output}", highlight=False)


@app.command()
def rules() -> None:
    """List every rule: code, name, default severity, summary."""
    from qdoctor.diagnose.registry import all_rules

    for r in all_rules():
        typer.echo(f"{r.code}  {r.name:<28} {r.severity.value:<8} {r.summary}")


@app.command()
def explain(code: str = typer.Argument(..., help="A rule code, e.g. QD002")) -> None:
    """Show the document of one rule."""
    from qdoctor.report.ruledocs import get_doc

    doc = get_doc(code)
    if doc is None:
        raise _fail(f"no rule {code!r}; `qdoctor rules` lists them")
    typer.echo(doc.text)


def main() -> None:
    app(prog_name="qdoctor")


if __name__ == "__main__":
    main()
