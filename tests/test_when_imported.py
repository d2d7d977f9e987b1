"""qdoctor.load.when_imported: a library is patched when the checked code imports it, and never imported for it."""

from __future__ import annotations

import sys

from qdoctor.load.when_imported import when_imported


def test_the_patch_waits_for_the_import_and_the_hook_leaves_with_the_block(tmp_path, monkeypatch):
    (tmp_path / "qd_probe_library.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "qd_probe_library", raising=False)
    seen: list[int] = []
    hooks = len(sys.meta_path)
    with when_imported("qd_probe_library", lambda module: seen.append(module.VALUE)):
        assert seen == [] and "qd_probe_library" not in sys.modules  # not imported for the patch
        import qd_probe_library

        assert seen == [1] and qd_probe_library.VALUE == 1
    assert len(sys.meta_path) == hooks
    with when_imported("qd_probe_library", lambda module: seen.append(module.VALUE + 1)):
        assert seen == [1, 2]  # already imported: patched at once
    with when_imported("qd_probe_never_imported", lambda module: seen.append(0)):
        pass
    assert seen == [1, 2] and len(sys.meta_path) == hooks


def test_checking_a_script_that_does_not_use_torchvision_does_not_import_it():
    # importing torchvision imports Dynamo, Inductor and sympy: seconds of every check (issue 26)
    import subprocess
    from pathlib import Path

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "healthy_static.py"
    code = (
        "import sys\n"
        "from qdoctor.load.target import load_target\n"
        f"load_target({str(fixture)!r})\n"
        "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'torch._inductor') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
