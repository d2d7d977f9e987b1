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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """A doctor for slow or broken quantized PyTorch models."""


def _split(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [v.strip().upper() for item in values for v in item.split(",") if v.strip()]


@app.command()
def check(
    target: str = typer.Argument(..., help="model.py, or package.module:attribute"),
    output_format: OutputFormat = typer.Option(OutputFormat.terminal, "--format", "-f", help="Report format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file (atomically)."),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above: error|warning|info|never (default: warning)."
    ),
    exit_zero: Optional[bool] = typer.Option(None, "--exit-zero/--no-exit-zero", help="Exit 0 even when there are findings."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Rule codes or prefixes to run (QD002,QD00)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Rule codes or prefixes to skip."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="pyproject.toml to read [tool.qdoctor] from (default: the nearest one above the model)."
    ),
    trace_dir: Optional[Path] = typer.Option(
        None, "--trace-dir", help="Write the profiler traces of subject and float baseline here (tensorboard --logdir)."
    ),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time the subject and the float baseline."),
    bench_time: float = typer.Option(1.0, "--bench-time", min=0.05, help="Seconds of timed runs per model."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profile with torch.profiler."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of qdoctor's own errors."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Apply each fix to a copy and measure it."),
    save_fixed: Optional[Path] = typer.Option(
        None, "--save-fixed", help="Write the 'fix all' model here (TorchScript, else state_dict + rebuild code)."
    ),
) -> None:
    """Diagnose a quantized model: measure it, find every cause of slowness or breakage, suggest fixes."""
    from qdoctor import config as settings_file

    try:
        settings = settings_file.resolve(
            target, config=config, select=_split(select), ignore=_split(ignore), fail_on=fail_on, exit_zero=exit_zero
        )
    except settings_file.ConfigError as exc:
        raise _fail(str(exc)) from None
    if trace_dir is not None:
        if not profile:
            raise _fail("--trace-dir writes the profiler's traces: it cannot be used with --no-profile")
        try:
            trace_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"--trace-dir: cannot create {trace_dir}: {exc.strerror or exc}") from None
    if save_fixed is not None and not verify:
        raise _fail("--save-fixed saves the verified 'fix all' model: drop --no-verify")
    if save_fixed is not None and not save_fixed.resolve().parent.is_dir():
        raise _fail(f"--save-fixed: no such directory: {save_fixed.resolve().parent}")
    console = _stderr()
    from qdoctor.check import CheckOptions, check as run_check
    from qdoctor.errors import TargetError
    from qdoctor.gather import GatherOptions
    from qdoctor.reporters import render

    options = CheckOptions(
        gather=GatherOptions(
            bench=bench, bench_time=bench_time, profile=profile, trace_dir=str(trace_dir) if trace_dir else None
        ),
        select=settings.select,
        ignore=settings.ignore,
        per_module_ignores=settings.per_module_ignores,
        verify=verify,
        save_fixed=str(save_fixed) if save_fixed is not None else None,
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
    color = output is None and output_format == OutputFormat.terminal and sys.stdout.isatty()
    text = render(report, output_format, color=color, root=str(Path.cwd()))
    if output is not None:
        from qdoctor.atomic import write_text_atomic

        try:
            write_text_atomic(output, text)
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if trace_dir is not None:
        from qdoctor.reporters.common import trace_lines

        for line in trace_lines(report.facts, str(trace_dir)):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    saved = report.extras.get("saved_fixed")
    if saved is not None:
        if saved.get("saved"):
            console.print(f"qdoctor: saved the fixed model to {saved['path']} ({saved['format']})", highlight=False, markup=False)
        elif saved.get("error"):
            raise _fail(f"--save-fixed: could not write {saved['path']}: {saved['error']}")
        else:
            console.print(f"qdoctor: nothing saved to {saved['path']}: {saved.get('reason', '')}", highlight=False, markup=False)
    raise typer.Exit(0 if settings.exit_zero else report.exit_code(settings.fail_on))


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
