"""qdoctor.facts.location: the one frame finder and same-file test, on every kind of stack it is given."""

from __future__ import annotations

import sys
import traceback

from qdoctor.facts.location import deepest_frame, exception_line, first_line, same_file, user_frame

HERE = __file__


def _raise_here() -> None:
    raise ValueError("inner\nsecond line")


def test_user_frame_in_a_traceback_is_the_deepest_one():
    try:
        _raise_here()
    except ValueError as exc:
        found = user_frame(exc.__traceback__, HERE)
    assert found is not None and found.code == 'raise ValueError("inner\\nsecond line")'


def test_user_frame_in_a_live_stack_and_in_listed_frames():
    live = user_frame(sys._getframe(), HERE)
    assert live is not None and live.code == "live = user_frame(sys._getframe(), HERE)"
    listed = [
        traceback.FrameSummary("/lib/outer.py", 1, "outer", lookup_line=False, line="outer()"),
        traceback.FrameSummary(HERE, 7, "f", lookup_line=False, line="  first()"),
        traceback.FrameSummary(HERE, 9, "g", lookup_line=False, line="  second()"),
        traceback.FrameSummary("/lib/inner.py", 3, "inner", lookup_line=False, line="boom()"),
    ]
    found = user_frame(listed, HERE)
    assert found is not None and (found.line, found.code) == (9, "second()")
    assert user_frame(listed, None) is None
    innermost = deepest_frame(listed, lambda _: True)
    assert innermost is not None and innermost.file == "/lib/inner.py"


def test_same_file_sees_through_relative_paths_and_symlinks(tmp_path, monkeypatch):
    real = tmp_path / "model.py"
    real.write_text("x = 1\n")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)
    assert same_file("model.py", str(real)) and same_file(str(link), str(real))
    assert not same_file("<string>", str(real)) and same_file("<string>", "<string>")


def test_first_line_and_exception_line():
    assert first_line("\n  boom  \nmore") == "boom"
    assert exception_line(RuntimeError("x" * 500 + "\ny"), 10) == "RuntimeError: " + "x" * 10
    assert exception_line(KeyError()) == "KeyError"
