"""The `qdoctor` command line: a thin typer shell over qdoctor.check. Must not import torch at module level."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from qdoctor import __version__
from qdoctor.reporters import OutputFormat

if TYPE_CHECKING:
    from rich.console import Console

    from qdoctor.batch import Outcome

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="A doctor for slow or broken quantized PyTorch models.",
    rich_markup_mode=None,
)




def _stderr():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str) -> "typer.Exit":
    _stderr().print(f"[bold red]qdoctor:[/] {message}", highlight=False, markup=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """A doctor for slow or broken quantized PyTorch models."""


def _split(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [v.strip().upper() for item in values for v in item.split(",") if v.strip()]


@app.command()
def check(
    targets: List[str] = typer.Argument(
        ..., help="model.py files, directories of them, or package.module:attribute", show_default=False
    ),
    output_format: OutputFormat = typer.Option(OutputFormat.terminal, "--format", "-f", help="Report format."),
    fail_on: str = typer.Option("warning", "--fail-on", help="Exit 1 on findings at or above: error|warning|info|never."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when there are findings."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Rule codes or prefixes to run (QD002,QD00)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Rule codes or prefixes to skip."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time the subject and the float baseline."),
    bench_time: float = typer.Option(1.0, "--bench-time", min=0.05, help="Seconds of timed runs per model."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profile with torch.profiler."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, help="Targets checked in parallel (default: the number of cores)."
    ),
    timeout: float = typer.Option(
        300.0, "--timeout", min=1.0, help="Seconds a target's check may run (after start-up) before it is stopped."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and the stacks of crashed checks."),
) -> None:
    """Diagnose quantized models: measure them, find every cause of slowness or breakage, suggest fixes.

    Each target is checked in its own process: a script that hangs, exits or crashes the process still gives a
    report (exit code 2, with what was gathered before).
    """
    if fail_on not in ("error", "warning", "info", "never"):
        raise _fail(f"--fail-on must be error, warning, info or never, not {fail_on!r}")
    from qdoctor.batch import check_targets, worst_exit_code
    from qdoctor.check import CheckOptions
    from qdoctor.gather import GatherOptions

    options = CheckOptions(
        gather=GatherOptions(bench=bench, bench_time=bench_time, profile=profile),
        select=_split(select),
        ignore=_split(ignore),
    )
    console = _stderr()
    try:
        with console.status("checking", spinner="dots") as status:
            outcomes = check_targets(
                targets, options, jobs=jobs, timeout=timeout, on_progress=lambda *state: status.update(_progress(*state))
            )
    except Exception as exc:  # noqa: BLE001 - qdoctor's own failure: one line unless --debug
        if debug:
            raise
        raise _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)") from None
    several = len(targets) > 1 or Path(targets[0]).is_dir()
    _explain(outcomes, debug, console)
    sys.stdout.write(_render(outcomes, several, output_format, fail_on, exit_zero))
    sys.stdout.flush()
    raise typer.Exit(worst_exit_code(outcomes, fail_on, exit_zero))


def _progress(done: int, total: int, running: list[tuple[str, str]]) -> str:
    from rich.markup import escape

    now = "; ".join(f"{spec}: {stage}" for spec, stage in running[:3]) or "finishing"
    return escape(f"{done}/{total} done; {now}" if total > 1 else now)


def _explain(outcomes: list[Outcome], debug: bool, console: Console) -> None:
    """One line on stderr for each target that could not be checked or is not quantized (the report says more)."""
    from rich.text import Text

    from qdoctor.batch import CHECKED
    from qdoctor.summary import not_quantized

    def say(line: str, style: str = "bold red") -> None:
        console.print(Text.assemble(("qdoctor: ", style), line), soft_wrap=True)

    for outcome in outcomes:
        if not_quantized(outcome):
            say(
                f"{outcome.spec}: the model is not quantized: nothing to diagnose; "
                f"run `qdoctor compare {outcome.spec}` to choose a quantization recipe",
                style="bold yellow",
            )
        elif outcome.status != CHECKED and outcome.reason and outcome.exit_code() == 2:
            say(outcome.reason if outcome.spec in outcome.reason else f"{outcome.spec}: {outcome.reason}")
            if debug and outcome.debug:
                console.print(Text(outcome.debug), soft_wrap=True)


def _render(outcomes: list[Outcome], several: bool, output_format: OutputFormat, fail_on: str, exit_zero: bool) -> str:
    from qdoctor.reporters import render
    from qdoctor.summary import render_json, render_table

    color = output_format == OutputFormat.terminal and sys.stdout.isatty()
    if not several:
        report = outcomes[0].report
        return render(report, output_format, color=color) if report is not None else ""
    if output_format == OutputFormat.json:
        return render_json(outcomes, fail_on, exit_zero)
    reports = [render(o.report, output_format, color=color) for o in outcomes if o.report is not None]
    return "\n".join([*reports, render_table(outcomes, fail_on, exit_zero, color=color)])


@app.command()
def rules() -> None:
    """List every rule: code, name, default severity, summary."""
    from qdoctor.registry import all_rules

    for r in all_rules():
        typer.echo(f"{r.code}  {r.name:<28} {r.severity.value:<8} {r.summary}")


@app.command()
def explain(code: str = typer.Argument(..., help="A rule code, e.g. QD002")) -> None:
    """Show the document of one rule."""
    from qdoctor.ruledocs import get_doc

    doc = get_doc(code)
    if doc is None:
        raise _fail(f"no rule {code!r}; `qdoctor rules` lists them")
    typer.echo(doc.text)


def main() -> None:
    app(prog_name="qdoctor")


if __name__ == "__main__":
    main()
