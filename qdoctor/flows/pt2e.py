"""PT2E: torch.export -> a Quantizer annotates the aten graph -> prepare_pt2e / calibrate / convert_pt2e -> lowered
by torch.compile with Inductor freezing (the lowering that turns q/dq patterns into int8 kernels). Its compare
recipe uses torchao's X86InductorQuantizer.

Optional: needs torchao and a working torch.compile (a C++ compiler). Anything missing is a skip with the reason.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import torch
from torch import nn

from qdoctor.facts import Environment, FlowKind
from qdoctor.facts.location import first_line
from qdoctor.flows import fallback_rebuild, flow_named, register
from qdoctor.flows._base import CONVERTED, BuildInputs, Built, Flow, Recipe
from qdoctor.flows._building import calibrate
from qdoctor.introspect.flow import ATEN_GRAPH, ModelFlow

RECIPE = "pt2e-x86"
_CONVERT = (
    "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e\n"
    "{model} = convert_pt2e({model})  # after calibrating the prepared model\n"
    "# then lower it: torch._inductor.config.freezing = True; model = torch.compile(model)  (QD012)"
)


def _unavailable(env: Environment) -> str | None:
    if not env.is_x86:
        return f"X86InductorQuantizer targets x86 CPUs; this machine is {env.machine}"
    try:
        _api()
    except Exception as exc:
        version = _torchao_version()
        found = f"torchao {version}" if version else "torchao is not installed"
        return f"{found}: its PT2E API cannot be imported ({type(exc).__name__}: {exc}); pip install 'qdoctor[torchao]'"
    return None


def _torchao_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torchao")
    except Exception:
        return None


def _api() -> tuple[Any, Any, Any, Any]:
    # torchao registers a pytree constant at import, which makes torch log a deprecation warning on stderr.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        return _import_api()
    finally:
        pytree_log.setLevel(level)


def _import_api() -> tuple[Any, Any, Any, Any]:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer

    return prepare_pt2e, convert_pt2e, move_exported_model_to_eval, x86_inductor_quantizer


def _doubled_batch(inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The example inputs with their batch dimension doubled, or None when dim 0 is not a shared batch dimension.

    torch.export specialises a dimension of size 1, so a batch of 2 is what lets it keep the batch dynamic.
    """
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if len(tensors) != len(inputs) or any(t.dim() == 0 for t in tensors):
        return None
    if len({t.shape[0] for t in tensors}) != 1:
        return None
    return tuple(torch.cat([t, t]) for t in tensors)


def export(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[torch.fx.GraphModule, str]:
    """torch.export the model, batch dimension dynamic where possible; strict (TorchDynamo) capture first, as
    torchao's x86 lowering does: on torch 2.14 the non-strict graph of a ResNet (``out += identity``) makes
    X86InductorQuantizer fail with "Input partition has more than one output node"."""
    doubled = _doubled_batch(inputs)
    attempts: list[tuple[str, tuple[Any, ...], Any, bool]] = []
    if doubled is not None:
        dynamic = tuple({0: torch.export.Dim.AUTO} for _ in doubled)
        attempts += [
            ("strict, dynamic batch", doubled, dynamic, True),
            ("non-strict, dynamic batch", doubled, dynamic, False),
        ]
    attempts += [
        ("strict, static shapes", tuple(inputs), None, True),
        ("non-strict, static shapes", tuple(inputs), None, False),
    ]
    errors = []
    for how, args, shapes, strict in attempts:
        try:
            exported = torch.export.export(copy.deepcopy(model).eval(), args, dynamic_shapes=shapes, strict=strict)
            return exported.module(), how
        except Exception as exc:
            errors.append(f"{how}: {type(exc).__name__}: {first_line(str(exc))[:200]}")
    raise RuntimeError("torch.export could not capture the model (" + "; ".join(errors) + ")")


def build_pt2e(
    float_model: nn.Module, inputs: tuple[Any, ...], batches: list[tuple[Any, ...]], vnni: bool = True
) -> Built:
    prepare_pt2e, convert_pt2e, move_to_eval, xiq = _api()
    exported, how = export(float_model, inputs)
    # Without VNNI, 8-bit activations can saturate the u8*s8 accumulation: torchao says to reduce the range there.
    config = xiq.get_default_x86_inductor_quantization_config(reduce_range=not vnni)
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, batches)
    converted = convert_pt2e(prepared)
    move_to_eval(converted)
    # Compiles on the first call (which must run under runtime()), once per input shape: with dynamic shapes the
    # int8 conv lowering of torch 2.14 fails a stride assertion (channels-last meta vs contiguous buffer).
    compiled = cast(nn.Module, torch.compile(converted, dynamic=False))  # an OptimizedModule, typed as a callable
    strict = not how.startswith("non-strict")
    export_line = (
        "batch = tuple(torch.cat([t, t]) for t in example_inputs)  # a batch of 1 would be specialised\n"
        f"exported = torch.export.export(float_model.eval(), batch, strict={strict},\n"
        "                               dynamic_shapes=tuple({0: torch.export.Dim.AUTO} for _ in batch)).module()\n"
        if "dynamic batch" in how
        else f"exported = torch.export.export(float_model.eval(), example_inputs, strict={strict}).module()\n"
    )
    code = (
        "import torch\n"
        "from torchao.quantization.pt2e import move_exported_model_to_eval\n"
        "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e\n"
        "from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq\n"
        f"{export_line}"
        f"config = xiq.get_default_x86_inductor_quantization_config(reduce_range={not vnni})\n"
        "prepared = prepare_pt2e(exported, xiq.X86InductorQuantizer().set_global(config))\n"
        "with torch.no_grad():\n"
        "    for batch in calibration_batches:\n"
        "        prepared(*batch)\n"
        "quantized = convert_pt2e(prepared)\n"
        "move_exported_model_to_eval(quantized)\n"
        "torch._inductor.config.freezing = True  # lowers q/dq patterns to int8 kernels\n"
        "with torch.no_grad():\n"
        "    quantized_model = torch.compile(quantized, dynamic=False)  # one compile per input shape\n"
        "    quantized_model(*example_inputs)  # compiles here"
    )
    steps = [
        f"torch.export ({how})",
        "prepare_pt2e with X86InductorQuantizer",
        f"calibrated on {len(batches)} batch(es)",
        "convert_pt2e",
        "torch.compile with Inductor freezing",
    ]
    return Built(compiled, "x86", steps, code)


@contextlib.contextmanager
def _freezing() -> Iterator[None]:
    """Inductor freezing on while the compiled model runs (it compiles, and recompiles for new shapes, lazily)."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield


def graph_bytes(model: nn.Module) -> int:
    """Serialized bytes of the tensors the quantized graph uses.

    After convert_pt2e the int8 weights are plain attributes read by get_attr nodes (not in the state_dict), while
    the state_dict can still hold float parameters the graph no longer reads: count what the graph reads.
    """
    graph_module = getattr(model, "_orig_mod", model)  # torch.compile wraps the GraphModule
    tensors: dict[str, torch.Tensor] = {}
    for module in graph_module.modules():
        graph = getattr(module, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            if node.op != "get_attr":
                continue
            value: Any = module
            for part in str(node.target).split("."):
                value = getattr(value, part, None)
            if isinstance(value, torch.Tensor):
                tensors[f"{id(module)}.{node.target}"] = value.detach()
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.tell()


@register
class Pt2eFlow(Flow):
    kind = FlowKind(
        "pt2e",
        "PT2E (torch.export, a Quantizer, prepare_pt2e / convert_pt2e, lowered by torch.compile)",
        exported_graph=True,
        prepare_step="PT2E prepare_pt2e",
        prepare_qat_step="PT2E QAT (prepare_qat_pt2e)",
        convert_code=_CONVERT,
        convert_qat_code=_CONVERT,
        keep_float_code=(
            "# keep them in float: a quantizer module filter (X86InductorQuantizer)\n"
            "for name in [{names}]:\n    quantizer.set_module_name_qconfig(name, None)"
        ),
    )
    priority = 20
    recipe_rank = 4
    slow_reason = "compiles with torch.compile (tens of seconds for a ResNet); select it with --recipes all"
    compiles_on_first_run = True

    def matches(self, look: ModelFlow) -> bool:
        return not look.script and look.graph == ATEN_GRAPH

    def rebuilt_by(self, look: ModelFlow) -> Flow | None:
        """A prepared (or float) exported graph is rebuilt the FX way; a converted one cannot be rebuilt."""
        if look.compiled:
            return fallback_rebuild(look)
        return None if self.stage(look) == CONVERTED else flow_named("fx")

    def recipes(self, engines: Sequence[str]) -> list[Recipe]:
        return [Recipe(RECIPE, self, "x86", "static int8, PT2E X86InductorQuantizer + torch.compile")]

    def build_recipe(self, recipe: Recipe, given: BuildInputs) -> Built:
        return build_pt2e(given.float_model, given.inputs, given.batches, vnni=given.vnni)

    def unavailable(self, recipe: Recipe, env: Environment) -> str | None:
        return _unavailable(env)

    def runtime(self, built: Built) -> AbstractContextManager[None]:
        return _freezing()

    def model_bytes(self, built: Built) -> int | None:
        return graph_bytes(built.model)

    def release(self) -> None:
        torch._dynamo.reset()  # compiled graphs and their frozen weights
