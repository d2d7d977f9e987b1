"""Start-up time of `qdoctor --help` and `qdoctor rules`, and of `import qdoctor` / `import qdoctor.api` in Python
(target: well under 1 s; none imports torch: the API loads torch when a check runs)."""

from __future__ import annotations

import sys

from common import machine, qdoctor_cmd, run_quiet, table, wall_times, write_section

IMPORTS = ("import qdoctor", "import qdoctor.api")


def main() -> str:
    rows = []
    for args in (["--help"], ["--version"], ["rules"]):
        median, iqr, times = wall_times(lambda args=args: run_quiet(qdoctor_cmd(*args)), repeats=15)
        rows.append([f"qdoctor {' '.join(args)}", f"{median * 1000:.0f} ± {iqr * 1000:.0f}", len(times)])
    for statement in IMPORTS:
        median, iqr, times = wall_times(lambda s=statement: run_quiet([sys.executable, "-c", s]), repeats=15)
        rows.append([f"python -c '{statement}'", f"{median * 1000:.0f} ± {iqr * 1000:.0f}", len(times)])
    body = f"Machine: {machine()}\n\n" + table(["command", "wall ms (median ± IQR)", "runs"], rows)
    body += "\n\nTarget: well under 1 s. Measured as whole processes (`python -m qdoctor ...`, `python -c ...`)."
    write_section("startup", "Start-up time", body)
    return body


if __name__ == "__main__":
    print(main())
