"""Start-up time of `qdoctor --help` and `qdoctor rules` (target: well under 1 s; neither imports torch)."""

from __future__ import annotations

from common import machine, qdoctor_cmd, run_quiet, table, wall_times, write_section


def main() -> str:
    rows = []
    for args in (["--help"], ["--version"], ["rules"]):
        median, iqr, times = wall_times(lambda args=args: run_quiet(qdoctor_cmd(*args)), repeats=15)
        rows.append([f"qdoctor {' '.join(args)}", f"{median * 1000:.0f} ± {iqr * 1000:.0f}", len(times)])
    body = f"Machine: {machine()}\n\n" + table(["command", "wall ms (median ± IQR)", "runs"], rows)
    body += "\n\nTarget: well under 1 s. Measured as whole processes (`python -m qdoctor ...`)."
    write_section("startup", "Start-up time", body)
    return body


if __name__ == "__main__":
    print(main())
