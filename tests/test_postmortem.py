"""Reading what a dead worker left behind: faulthandler stacks, exit codes, bounded captured output. No processes."""

import signal

from qdoctor.facts import Environment, Facts, Target
from qdoctor.run import dead_worker as postmortem
from qdoctor.run.check import CheckOptions

SEGFAULT_DUMP = """\
Fatal Python error: Segmentation fault

Thread 0x00007f3a2d1fe640 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait
  File "/work/qdoctor/worker.py", line 70 in watch

Current thread 0x00007f3a3c9b4740 (most recent call first):
  File "/usr/lib/python3.11/ctypes/__init__.py", line 519 in string_at
  File "{user}", line 14 in forward
  File "/venv/torch/nn/modules/module.py", line 1783 in _wrapped_call_impl
  File "{user}", line 30 in forward
  File "/work/qdoctor/gather/trace.py", line 150 in trace_model

Extension modules: torch._C (total: 1)
"""


def test_the_deepest_frame_in_the_user_file_is_where_it_died(tmp_path):
    user = tmp_path / "model.py"
    user.write_text("\n" * 13 + "        ctypes.string_at(0)\n")
    location, frames = postmortem.locate(SEGFAULT_DUMP.format(user=user), str(user))
    assert (location.file, location.line, location.code) == (str(user), 14, "ctypes.string_at(0)")
    assert frames[0].endswith("ctypes/__init__.py:519 in string_at") and len(frames) == 5
    assert postmortem.where_text(location) == " at model.py:14 `ctypes.string_at(0)`"


def test_without_a_user_frame_the_innermost_frame_is_given():
    location, frames = postmortem.locate(SEGFAULT_DUMP.format(user="/elsewhere.py"), "/not/the/user.py")
    assert location.file == "/usr/lib/python3.11/ctypes/__init__.py"  # the thread that crashed, innermost frame
    assert postmortem.locate("no dump here", "/x.py") == (None, [])


def test_exit_codes_say_what_happened():
    assert "segmentation fault (SIGSEGV)" in postmortem.describe_death(-signal.SIGSEGV, None)
    assert "aborted (SIGABRT)" in postmortem.describe_death(-signal.SIGABRT, None)
    killed = postmortem.describe_death(-signal.SIGKILL, 2048.4)
    assert "out-of-memory killer" in killed and "2048 MB" in killed
    assert "exited with code 7" in postmortem.describe_death(7, None)


def test_captured_output_keeps_its_start_and_end(tmp_path):
    path = tmp_path / "stdout.txt"
    path.write_bytes(b"first line\n" + b"x" * 1_000_000 + b"\nlast line\n")
    text = postmortem.read_capture(path)
    assert text.startswith("first line") and text.endswith("last line\n")
    assert len(text) < postmortem.CAPTURE_HEAD + postmortem.CAPTURE_TAIL + 100
    assert "more bytes of output not kept" in text
    assert postmortem.read_capture(tmp_path / "absent.txt") == ""


def _facts() -> Facts:
    environment = Environment("2.14", "3.11", "linux", "x86_64", "cpu", [], "AVX2", 2, "x86", ["x86"], 2, 1, {})
    target = Target("m.py", "/m.py", "model", None, "x", [])
    return Facts(target=target, environment=environment)


def test_partial_report_marks_what_was_not_gathered_and_places_the_crash():
    crash = postmortem.crash_of_death("SIGSEGV", "crashed", "tracing one forward pass", None)
    report = postmortem.partial_report(_facts(), CheckOptions(), "it crashed", "tracing one forward pass", crash)
    facts = report.facts
    assert facts.trace.crash is crash and facts.crash is crash
    assert facts.unavailable["modules"] == "not gathered: the check stopped (stage: tracing one forward pass)"
    assert {s.rule for s in report.skipped} >= {"QD006"}  # rules that need what is missing are skipped, with why
    assert report.notes[0].startswith("the check did not finish: it crashed.")


def test_a_crash_while_loading_is_the_scripts_crash():
    crash = postmortem.crash_of_death("SIGABRT", "aborted", "loading m.py", None)
    report = postmortem.partial_report(_facts(), CheckOptions(), "aborted", "loading m.py", crash)
    assert report.facts.target.load_crash is crash and report.facts.trace is None
