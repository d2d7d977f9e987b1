#!/usr/bin/env python3
"""Set up and run qdoctor from a fresh clone with nothing but Python 3.10+.

    python3 dev.py demo    # create .venv, install qdoctor, run `qdoctor check` on the seed 004 fixture
    python3 dev.py test    # create .venv, install qdoctor with its test extras, lint + type-check, run the whole test suite
    python3 dev.py bench   # run the benchmarks in bench/ and rewrite bench/RESULTS.md
    python3 dev.py readme  # regenerate the README's rule table from rules/*.md

The venv is reused while pyproject.toml and .ci/constraints.txt are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
EXTRAS = {"demo": "", "test": "[dev,torchao,tensorboard,llm,executorch]", "bench": "[dev,torchao,llm]", "readme": ""}


def sh(*args: str | Path) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_venv(extras: str) -> None:
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".qdoctor-installed{extras or '[]'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    # torch/torchvision pinned to the tested versions; pip takes them from the local wheel cache where there is one.
    code = sh(
        PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", CONSTRAINTS, "-e", f".{extras}"
    )
    if code != 0:
        sys.exit(f"dev.py: installing qdoctor{extras} failed (pip exit {code})")
    stamp.write_text(digest)


LINTED = ("qdoctor", "tests", "bench", "dev.py")


def test(pytest_args: list[str]) -> int:
    """Lint (ruff), format check (ruff format), types (mypy on qdoctor/), then the whole pytest suite.

    Every step runs even when an earlier one failed, so one run shows everything; the exit code is the first failure's.
    """
    steps = [
        ("ruff check", [PYTHON, "-m", "ruff", "check", *LINTED]),
        ("ruff format", [PYTHON, "-m", "ruff", "format", "--check", *LINTED]),
        ("mypy", [PYTHON, "-m", "mypy"]),
        ("pytest", [PYTHON, "-m", "pytest", *pytest_args]),
    ]
    failed = [(name, code) for name, command in steps if (code := sh(*command)) != 0]
    for name, code in failed:
        print(f"dev.py: {name} failed (exit {code})", flush=True)
    return failed[0][1] if failed else 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command not in EXTRAS:
        print(__doc__)
        return 2
    ensure_venv(EXTRAS[command])
    if command == "demo":
        fixture = argv[1] if len(argv) > 1 else "fixtures/seed004_as_written.py"
        code = sh(BIN / "qdoctor", "check", fixture, *argv[2:])
        if code == 1:
            print("dev.py: qdoctor exited 1 because it found problems, as expected for this fixture", flush=True)
            return 0
        return code
    if command == "readme":
        script = "from pathlib import Path; from qdoctor.report.ruledocs import with_readme_table as w; p = Path('README.md'); p.write_text(w(p.read_text()))"
        return sh(PYTHON, "-c", script)
    if command == "test":
        return test(argv[1:])
    return sh(PYTHON, "bench/run.py", *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
