"""The `qdoctor` command line: a thin typer shell over qdoctor.check. Must not import torch at module level."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from qdoctor import __version__
from qdoctor.reporters import OutputFormat

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
    target: str = typer.Argument(
        ..., help="model.py, package.module:attribute, or a saved model (.pt TorchScript, .pt2 ExportedProgram)"
    ),
    output_format: OutputFormat = typer.Option(OutputFormat.terminal, "--format", "-f", help="Report format."),
    fail_on: str = typer.Option("warning", "--fail-on", help="Exit 1 on findings at or above: error|warning|info|never."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when there are findings."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Rule codes or prefixes to run (QD002,QD00)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Rule codes or prefixes to skip."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time the subject and the float baseline."),
    bench_time: float = typer.Option(1.0, "--bench-time", min=0.05, help="Seconds of timed runs per model."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profile with torch.profiler."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of qdoctor's own errors."),
    trust: bool = typer.Option(
        False, "--trust", help="Allow a pickled full model (torch.save(model)) as TARGET: unpickling runs code from it."
    ),
) -> None:
    """Diagnose a quantized model: measure it, find every cause of slowness or breakage, suggest fixes."""
    if fail_on not in ("error", "warning", "info", "never"):
        raise _fail(f"--fail-on must be error, warning, info or never, not {fail_on!r}")
    console = _stderr()
    from qdoctor.check import CheckOptions, check as run_check
    from qdoctor.errors import TargetError
    from qdoctor.gather import GatherOptions
    from qdoctor.reporters import render

    options = CheckOptions(
        gather=GatherOptions(bench=bench, bench_time=bench_time, profile=profile),
        select=_split(select),
        ignore=_split(ignore),
        trust=trust,
    )
    try:
        with console.status("checking", spinner="dots") as status:
            report = run_check(target, options, progress=lambda msg: status.update(msg))
    except TargetError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - qdoctor's own failure: one line unless --debug
        if debug:
            raise
        raise _fail(f"internal error while checking {target}: {type(exc).__name__}: {exc} (rerun with --debug)") from None
    color = output_format == OutputFormat.terminal and sys.stdout.isatty()
    sys.stdout.write(render(report, output_format, color=color))
    sys.stdout.flush()
    raise typer.Exit(0 if exit_zero else report.exit_code(fail_on))


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
