"""Flow facts: which quantization flow produced the subject (eager, FX, PT2E, torchao quantize_, TorchScript), how
it is compiled, which PT2E quantizer the script used, and the installed torchao version.

A flow step that raised is only a crash here (Facts.target.load_crash, Facts.trace.crash): the rules diagnose it
(qdoctor.diagnose.flow_causes).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from torch import nn

from qdoctor import facts as F
from qdoctor.facts import CompileInfo, FlowInfo, GraphNode, ModuleInfo, QConfigInfo, SourceLocation
from qdoctor.flows import detect
from qdoctor.introspect.flow import ModelFlow, graph_dialect, model_flow

_QUANTIZER_BASES = ("torchao.quantization.pt2e.quantizer", "torch.ao.quantization.quantizer", "executorch")
_QUANTIZER_CALL = re.compile(r"\b(\w*Quantizer)\s*\(")


def torchao_version() -> str | None:
    """The installed torchao version, when torchao is imported (it is never imported here)."""
    module = sys.modules.get("torchao")
    if module is None:
        return None
    return str(getattr(module, "__version__", "unknown"))


def _is_quantizer(value: Any) -> bool:
    for cls in type(value).__mro__:
        if cls.__name__ == "Quantizer" and cls.__module__.startswith(_QUANTIZER_BASES):
            return True
    return False


def quantizers_in(namespace: Mapping[str, Any], script_text: str) -> list[str]:
    """PT2E quantizers the script holds (qualified class names), or constructs in code qdoctor did not run."""
    found: list[str] = []
    for value in namespace.values():
        if _is_quantizer(value):
            cls = type(value)
            found.append(f"{cls.__module__}.{cls.__qualname__}")
    for name in _QUANTIZER_CALL.findall(script_text or ""):
        if name != "Quantizer" and not any(q.endswith("." + name) for q in found):
            found.append(name)
    return list(dict.fromkeys(found))


def _inductor_config_freezing() -> bool | None:
    config = sys.modules.get("torch._inductor.config")
    value = getattr(config, "freezing", None) if config is not None else None
    return bool(value) if value is not None else None


def compile_info(subject: nn.Module, source: SourceLocation | None) -> CompileInfo | None:
    """How a torch.compile'd subject will compile: backend, options, and whether Inductor freezing is on.

    torch.compile keeps its backend on the OptimizedModule (private attributes, read defensively); the freezing
    flag comes from options=... first, then torch._inductor.config as the script left it, then the environment.
    """
    if type(subject).__name__ != "OptimizedModule":
        return None
    backend_name = None
    options: dict[str, Any] = {}
    try:
        compiled: Any = subject  # an OptimizedModule: its backend hangs off private attributes
        backend = compiled.dynamo_ctx.callback
        for _ in range(6):
            if hasattr(backend, "compiler_name"):
                break
            backend = getattr(backend, "_torchdynamo_orig_backend", None)
        backend_name = getattr(backend, "compiler_name", None)
        options = dict(getattr(backend, "config", None) or {})
    except AttributeError:
        backend_name = None
    info = CompileInfo(backend=backend_name, options={k: repr(v) for k, v in options.items()}, source=source)
    if "freezing" in options:
        info.freezing, info.freezing_source = bool(options["freezing"]), "torch.compile(options={'freezing': ...})"
    elif _inductor_config_freezing() is not None:
        info.freezing = _inductor_config_freezing()
        info.freezing_source = "torch._inductor.config.freezing (as the script left it)"
    elif "TORCHINDUCTOR_FREEZING" in os.environ:
        info.freezing = os.environ["TORCHINDUCTOR_FREEZING"] == "1"
        info.freezing_source = "TORCHINDUCTOR_FREEZING"
    else:
        info.freezing, info.freezing_source = False, "default (off)"
    return info


def flow_look(model: nn.Module, graph: list[GraphNode] | None, modules: list[ModuleInfo] | None) -> ModelFlow:
    """The look the flows detect from (qdoctor.flows.detect), over what gathering found: the inventory's module kinds
    and the classified graph (finer than a look at the live model: int8 propagation, reference patterns,
    TorchScript), with the live look's TorchScript / QAT / dynamic-only / compiled answers."""
    return dataclasses.replace(
        model_flow(model),
        graph=None if graph is None else graph_dialect((n.op, n.target) for n in graph),
        module_kinds=frozenset(m.kind for m in modules or []),
        node_kinds=frozenset(n.kind for n in graph or []),
    )


def flow_info(
    subject: nn.Module,
    graph: list[GraphNode] | None,
    modules: list[ModuleInfo] | None,
    namespace: Mapping[str, Any],
    script_text: str,
    saved_format: str | None = None,
    compile_source: SourceLocation | None = None,
    source: SourceLocation | None = None,
    engine: str = "",
    fx_configs: tuple[Any, Any] = (None, None),
) -> FlowInfo:
    look = flow_look(subject, graph, modules)
    detected = detect(look)
    info = FlowInfo(
        kind=detected.kind,
        stage=detected.stage,
        saved_format=saved_format,
        source=source,
        compiled=compile_info(subject, compile_source),
        quantizers=quantizers_in(namespace, script_text),
        torchao_version=torchao_version(),
    )
    info.fx_backend_config, info.fx_qconfig = fx_configuration(fx_configs, namespace)
    if look.script:
        info.notes.append(_torchscript_note(modules, engine))
    return info


def fx_configuration(recorded: tuple[Any, Any], namespace: Mapping[str, Any]) -> tuple[str | None, QConfigInfo | None]:
    """The FX configuration: the BackendConfig's name and the QConfigMapping's global (else most common) qconfig, from
    what the script gave its FX steps (load/flow_steps.py), else from the objects of those types its globals hold."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.backend_config import BackendConfig

    from qdoctor.gather.modules import qconfig_info

    qconfig_mapping, backend_config = recorded
    if qconfig_mapping is None:
        qconfig_mapping = next((v for v in namespace.values() if isinstance(v, QConfigMapping)), None)
    if backend_config is None:
        backend_config = next((v for v in namespace.values() if isinstance(v, BackendConfig)), None)
    name = getattr(backend_config, "name", None) if isinstance(backend_config, BackendConfig) else None
    described = None
    if isinstance(qconfig_mapping, QConfigMapping):
        chosen = qconfig_mapping.global_qconfig
        if chosen is None:
            others = [q for q in qconfig_mapping.object_type_qconfigs.values() if q is not None]
            others += [q for q in qconfig_mapping.module_name_qconfigs.values() if q is not None]
            chosen = max(others, key=others.count) if others else None
        described = qconfig_info(chosen)
    return (str(name) if name else None), described


def _torchscript_note(modules: list[ModuleInfo] | None, engine: str) -> str:
    """What a TorchScript module tells about the engine: its packed weights' qschemes, not the engine itself."""
    schemes = [m.weight_qscheme for m in modules or [] if m.kind == F.QUANTIZED and m.weight_qscheme]
    per_channel = sum("per_channel" in s for s in schemes)
    per_tensor = len(schemes) - per_channel
    if not schemes:
        packed = "no packed int8 weights"
    elif per_channel and not per_tensor:
        packed = f"{len(schemes)} packed int8 weights, all per-channel (the x86/fbgemm/onednn qconfig family)"
    elif per_tensor and not per_channel:
        packed = f"{len(schemes)} packed int8 weights, all per-tensor (the qnnpack qconfig family)"
    else:
        packed = f"{len(schemes)} packed int8 weights ({per_channel} per-channel, {per_tensor} per-tensor)"
    return (
        "a TorchScript archive does not record the quantized engine it was saved under (packed weights are "
        f"serialized unpacked); it holds {packed}, and the engine in force here is {engine}"
    )
