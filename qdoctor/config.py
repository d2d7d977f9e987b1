"""The CI gate's settings: `[tool.qdoctor]` in the user's pyproject.toml, overridden by the command line.

    [tool.qdoctor]
    select = ["QD"]                    # rule codes or prefixes to run (default: all)
    ignore = ["QD010"]                 # codes or prefixes to skip; the longer matching prefix wins (Ruff's rule)
    per-module-ignores = { "backbone.*" = ["QD004"], "head" = ["QD00"] }
    fail-on = "warning"                # error | warning | info | never
    exit-zero = false

The pyproject.toml is the nearest one with a `[tool.qdoctor]` table, found by walking up from the model file (from
the working directory for a `package.module:attribute` target), or the file given with `--config`.
Anything wrong in it is a ConfigError: one line for the user, exit 2. No torch import here (the CLI loads this).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FAIL_ON = ("error", "warning", "info", "never")
KNOWN_KEYS = ("select", "ignore", "per-module-ignores", "fail-on", "exit-zero")
_CODE = re.compile(r"^QD\d{0,3}$")


class ConfigError(Exception):
    """A bad setting in pyproject.toml or on the command line; the message is one line for the user."""


@dataclass
class Settings:
    select: list[str] | None = None  # None: every rule
    ignore: list[str] = field(default_factory=list)
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)  # module glob -> codes or prefixes
    fail_on: str = "warning"
    exit_zero: bool = False
    source: Path | None = None  # the pyproject.toml the settings came from, if any


def rule_codes(values: Any, where: str) -> list[str]:
    """Upper-cased rule codes or prefixes (QD002, QD00, QD); anything else is a ConfigError."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError(f'{where} must be a list of rule codes or prefixes, like ["QD002", "QD00"]')
    codes = []
    for value in values:
        code = str(value).strip().upper()
        if not isinstance(value, str) or not _CODE.match(code):
            raise ConfigError(f"{where}: {value!r} is not a rule code or prefix (QD002, QD00, QD)")
        codes.append(code)
    return codes


def fail_level(value: Any, where: str) -> str:
    if value not in FAIL_ON:
        raise ConfigError(f"{where} must be error, warning, info or never, not {value!r}")
    return str(value)


def start_dir(target: str) -> Path:
    """Where the search for pyproject.toml starts: the model file's folder, else the working directory."""
    path = Path(target)
    if path.is_file():
        return path.resolve().parent
    if path.is_dir():
        return path.resolve()
    return Path.cwd()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.qdoctor] table, from ``start`` up to the file system root."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "qdoctor" in _read_toml(candidate).get("tool", {}):
            return candidate
    return None


def parse(table: Any, source: Path | None) -> Settings:
    """Validate one [tool.qdoctor] table."""
    where = f"{source}: [tool.qdoctor]" if source else "[tool.qdoctor]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} "
            f"(known: {', '.join(KNOWN_KEYS)})"
        )
    settings = Settings(source=source)
    if "select" in table:
        settings.select = rule_codes(table["select"], f"{where} select")
    if "ignore" in table:
        settings.ignore = rule_codes(table["ignore"], f"{where} ignore")
    if "per-module-ignores" in table:
        per_module = table["per-module-ignores"]
        if not isinstance(per_module, dict):
            raise ConfigError(f'{where} per-module-ignores must be a table: {{ "backbone.*" = ["QD004"] }}')
        settings.per_module_ignores = {
            str(pattern): rule_codes(codes, f"{where} per-module-ignores {pattern!r}")
            for pattern, codes in per_module.items()
        }
    if "fail-on" in table:
        settings.fail_on = fail_level(table["fail-on"], f"{where} fail-on")
    if "exit-zero" in table:
        if not isinstance(table["exit-zero"], bool):
            raise ConfigError(f"{where} exit-zero must be true or false")
        settings.exit_zero = table["exit-zero"]
    return settings


def load(pyproject: Path) -> Settings:
    """The settings in one pyproject.toml (defaults when it has no [tool.qdoctor])."""
    return parse(_read_toml(pyproject).get("tool", {}).get("qdoctor", {}), pyproject)


def resolve(
    target: str,
    *,
    config: Path | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    fail_on: str | None = None,
    exit_zero: bool | None = None,
) -> Settings:
    """The settings for checking ``target``: its pyproject.toml (or ``config``), then the command line on top.

    A command-line value given (not None) replaces the file's: ``--select`` replaces ``select``, and so on.
    """
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"--config: no such file: {config}")
        settings = load(config)
    else:
        found = find_pyproject(start_dir(target))
        settings = load(found) if found else Settings()
    if select is not None:
        settings.select = rule_codes(select, "--select")
    if ignore is not None:
        settings.ignore = rule_codes(ignore, "--ignore")
    if fail_on is not None:
        settings.fail_on = fail_level(fail_on, "--fail-on")
    if exit_zero is not None:
        settings.exit_zero = exit_zero
    return settings
