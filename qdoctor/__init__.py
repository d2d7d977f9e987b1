"""qdoctor: a doctor for slow or broken quantized PyTorch models.

In Python (a notebook, a test)::

    import qdoctor

    report = qdoctor.check_model(quantized_model, example_inputs, float_model=float_model)
    report            # in Jupyter: the HTML report inline
    report.ok         # no finding at or above fail_on ("warning")

``qdoctor.check("model.py")`` checks a script as the command line does, ``qdoctor.compare_model(float_model,
example_inputs)`` compares quantization recipes, and ``qdoctor.testing.assert_healthy`` fails a test with the
Markdown report. See qdoctor.api.

Importing the package must stay cheap: `qdoctor --help` and `--version` never import torch, so the API is loaded on
first use (``__getattr__``).
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import qdoctor` stays a bare module (type checkers know the name)
if TYPE_CHECKING:
    from typing import Any

    from qdoctor.api import Report, check, check_model, compare_model

_API = ("Report", "check", "check_model", "compare_model")  # from qdoctor.api, on first use
_SUBMODULES = ("api", "errors", "testing")

__all__ = ["Report", "__version__", "check", "check_model", "compare_model"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _API:
        value = getattr(importlib.import_module("qdoctor.api"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"qdoctor.{name}")
    else:
        raise AttributeError(f"module 'qdoctor' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_SUBMODULES})
