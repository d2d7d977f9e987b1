"""torch's process-global state: keep it as the user left it (engine, threads, grad mode, dtype, RNG, Inductor
freezing), and keep a user's model's prints and warnings out of qdoctor's output."""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The user's model may print or warn on every forward: keep that out of qdoctor's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Restore torch's process-global settings that a user's script or a counterfactual may change."""
    import torch

    engine = torch.backends.quantized.engine
    threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()
    rng = torch.random.get_rng_state()  # scripts seed and draw; qdoctor draws inputs and calibration data
    # Inductor's freezing flag: a script may set it for its torch.compile (read only if the script imported it).
    inductor_config = sys.modules.get("torch._inductor.config")
    freezing = getattr(inductor_config, "freezing", None)
    try:
        yield
    finally:
        torch.backends.quantized.engine = engine
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(default_dtype)
        torch.random.set_rng_state(rng)
        if inductor_config is not None and freezing is not None:
            config: Any = inductor_config  # a config module: its attributes are set at import time
            config.freezing = freezing
        elif inductor_config is None and "torch._inductor.config" in sys.modules:
            _reset_inductor_freezing(sys.modules["torch._inductor.config"])


def _reset_inductor_freezing(config: Any) -> None:
    """The script imported Inductor and may have set freezing: back to what the environment or torch defaults to."""
    try:
        entry = config._config["freezing"]
        from_env = entry.env_value_default
        config.freezing = from_env if isinstance(from_env, bool) else bool(entry.default)
    except (AttributeError, KeyError, TypeError):  # a torch whose config module is laid out differently
        pass


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Run with ``torch.backends.quantized.engine = engine``; the previous engine is restored afterwards."""
    import torch

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous
