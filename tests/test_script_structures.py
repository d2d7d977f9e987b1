"""Scripts of unusual structure run the way their author meant (round-3 batch of public scripts): a debugger
breakpoint left in the script, a model whose ``forward`` the script calls directly, calls from worker threads."""

from __future__ import annotations

import sys
import textwrap

import pytest

from qdoctor.load.options import LoadOptions
from qdoctor.load.target import load_target


def _script(tmp_path, body: str):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.mark.parametrize("stop_on_error", [False, True])
@pytest.mark.parametrize("call", ["import pdb; pdb.set_trace()", "breakpoint()"])
def test_a_breakpoint_is_skipped_and_noted_not_a_crash(tmp_path, call, stop_on_error):
    """pdb with qdoctor's empty stdin would quit with BdbQuit, which is no failure of the script."""
    import pdb

    hook_before, set_trace_before = sys.breakpointhook, pdb.set_trace
    loaded = load_target(
        _script(
            tmp_path,
            f"""
            import torch
            float_model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
            model = torch.ao.quantization.quantize_dynamic(float_model, {{torch.nn.Linear}})
            {call}
            after_breakpoint = model(torch.randn(2, 4))
            """,
        ),
        options=LoadOptions(keep_going=not stop_on_error),
    )
    target = loaded.target
    assert target.load_crash is None and not target.script_errors
    assert target.breakpoints_skipped == [5]
    assert "after_breakpoint" in loaded.namespace  # the script went on after the breakpoint
    assert sys.breakpointhook is hook_before and pdb.set_trace is set_trace_before  # restored


def test_the_breakpoint_note_names_its_line(tmp_path):
    from conftest import run_check

    report = run_check(
        _script(
            tmp_path,
            """
            import torch
            float_model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
            model = torch.ao.quantization.quantize_dynamic(float_model, {torch.nn.Linear})
            x = torch.randn(2, 4)
            import pdb; pdb.set_trace()
            """,
        ),
        profile=False,
    )
    assert "QD014" not in {f.rule for f in report.findings}
    assert any("skipped the debugger breakpoint at line 6" in note for note in report.notes), report.notes
