"""Stand-ins for the names a bug report's code uses but never defines: the imports it leaves out (``torch``, ``nn``,
``F``, ``np``, the torch.ao.quantization aliases people use) and a model class it takes from a tutorial without
showing it (``MobileNetV2()``: torchvision's builder with random weights; its quantizable variant when the script
fuses the model or uses stubs). Each one used is recorded as a Substitution, like the offline stand-ins of
qdoctor.load.standins. Only names that the script never binds anywhere are stood in for.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import re
import warnings
from collections.abc import Callable
from typing import Any

from qdoctor.facts import Substitution
from qdoctor.load.left_out import STACK as _STACK

# name -> (module to import, attribute of it or "" for the module itself)
WELL_KNOWN: dict[str, tuple[str, str]] = {
    "torch": ("torch", ""),
    "nn": ("torch.nn", ""),
    "F": ("torch.nn.functional", ""),
    "np": ("numpy", ""),
    "numpy": ("numpy", ""),
    "torchvision": ("torchvision", ""),
    "transforms": ("torchvision.transforms", ""),
    "datasets": ("torchvision.datasets", ""),
    "models": ("torchvision.models", ""),
    "time": ("time", ""),
    "copy": ("copy", ""),
    "os": ("os", ""),
    "math": ("math", ""),
    "tq": ("torch.ao.quantization", ""),
    "quant": ("torch.ao.quantization", ""),
    "quantization": ("torch.ao.quantization", ""),
    "quantize_fx": ("torch.ao.quantization.quantize_fx", ""),
    "nnq": ("torch.ao.nn.quantized", ""),
    "nnqd": ("torch.ao.nn.quantized.dynamic", ""),
    "DataLoader": ("torch.utils.data", "DataLoader"),
    "QuantStub": ("torch.ao.quantization", "QuantStub"),
    "DeQuantStub": ("torch.ao.quantization", "DeQuantStub"),
    "QuantWrapper": ("torch.ao.quantization", "QuantWrapper"),
    "FloatFunctional": ("torch.ao.nn.quantized", "FloatFunctional"),
    "fuse_modules": ("torch.ao.quantization", "fuse_modules"),
    "prepare": ("torch.ao.quantization", "prepare"),
    "convert": ("torch.ao.quantization", "convert"),
    "prepare_qat": ("torch.ao.quantization", "prepare_qat"),
    "quantize_dynamic": ("torch.ao.quantization", "quantize_dynamic"),
    "get_default_qconfig": ("torch.ao.quantization", "get_default_qconfig"),
    "get_default_qat_qconfig": ("torch.ao.quantization", "get_default_qat_qconfig"),
    "get_default_qconfig_mapping": ("torch.ao.quantization", "get_default_qconfig_mapping"),
    "QConfigMapping": ("torch.ao.quantization", "QConfigMapping"),
    "prepare_fx": ("torch.ao.quantization.quantize_fx", "prepare_fx"),
    "convert_fx": ("torch.ao.quantization.quantize_fx", "convert_fx"),
    "prepare_qat_fx": ("torch.ao.quantization.quantize_fx", "prepare_qat_fx"),
    "fuse_fx": ("torch.ao.quantization.quantize_fx", "fuse_fx"),
    "get_default_qat_qconfig_mapping": ("torch.ao.quantization", "get_default_qat_qconfig_mapping"),
    "symbolic_trace": ("torch.fx", "symbolic_trace"),
}
# Signs that the script quantizes the model in eager mode (fuses it, places stubs): the quantizable variant.
_EAGER_SIGNS = re.compile(r"\bfuse_model\b|QuantStub|DeQuantStub|QuantWrapper|quantize\s*=\s*True")


def _used_and_bound(tree: ast.Module) -> tuple[dict[str, int], set[str], set[str]]:
    """Names loaded (with the first line), names bound anywhere (any scope), and names called."""
    used: dict[str, int] = {}
    bound: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                used.setdefault(node.id, node.lineno)
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
    return used, bound, called


def _imported_after_use(tree: ast.Module, used: dict[str, int]) -> dict[str, int]:
    """The well-known names a report uses before the block that imports them (a fragment shown first, the full
    script after it), bound by nothing but imports: stood in for the fragment, the same module the import binds."""
    imported: dict[str, int] = {}
    other: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = (alias.asname or alias.name).split(".")[0]
                imported[name] = min(node.lineno, imported.get(name, node.lineno))
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            other.add(node.id)
    return {
        name: line
        for name, line in used.items()
        if name in WELL_KNOWN and name in imported and name not in other and line < imported[name]
    }


def _from_uninstalled(tree: ast.Module) -> dict[str, int]:
    """The names a report imports from a package this machine does not have (outside the quantization stack, whose
    missing modules are diagnosed), each with its import's line."""
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        package = node.module.split(".")[0]
        if package in _STACK or importlib.util.find_spec(package) is not None:
            continue
        for alias in node.names:
            if alias.name != "*":
                found.setdefault(alias.asname or alias.name, node.lineno)
    return found


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def torchvision_builder(name: str, quantizable: bool) -> tuple[Callable[..., Any], str] | None:
    """torchvision's builder for a model class name (``MobileNetV2`` -> mobilenet_v2, ``ResNet18`` -> resnet18), the
    quantizable one from torchvision.models.quantization when asked and available; None when torchvision has none."""
    try:
        import torchvision.models as models
        import torchvision.models.quantization as quantizable_models
    except ImportError:
        return None
    wanted = _normalized(name).removeprefix("quantizable")
    for builder in models.list_models(module=models):
        if _normalized(builder) != wanted:
            continue
        if quantizable and hasattr(quantizable_models, builder):
            return getattr(quantizable_models, builder), f"torchvision.models.quantization.{builder}"
        return models.get_model_builder(builder), f"torchvision.models.{builder}"
    return None


@functools.lru_cache(maxsize=1)
def _torchvision_builders() -> frozenset[str]:
    """torchvision's model builder names (``resnet18``, ``mobilenet_v2``), called by reports that left out their
    import; empty without torchvision."""
    try:
        import torchvision.models as models
    except ImportError:
        return frozenset()
    return frozenset(models.list_models(module=models))


def _builder_standin(builder: Callable[..., Any], quantizable: bool) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        options = {k: v for k, v in kwargs.items() if k in ("num_classes", "width_mult", "aux_logits", "init_weights")}
        if quantizable:
            options["quantize"] = False
        return builder(weights=None, **options)

    return build


def stand_in_names(source: str, file: str) -> tuple[dict[str, Any], list[Substitution]]:
    """The globals to give a report's script for the names it uses and never binds, and their substitutions."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}, []
    used, bound, called = _used_and_bound(tree)
    missing = {name: line for name, line in used.items() if name not in bound and not hasattr(builtins, name)}
    # a model builder imported from the author's own package, not installed here (`from models.convnext import
    # convnext_tiny`): the import is left out when it raises, and the name is stood in like one never defined
    uninstalled = {name: line for name, line in _from_uninstalled(tree).items() if name in used and name in called}
    missing.update(uninstalled)
    late = _imported_after_use(tree, used)
    missing.update(late)
    values: dict[str, Any] = {}
    used_subs: list[Substitution] = []
    for name, line in sorted(missing.items(), key=lambda item: item[1]):
        if name in WELL_KNOWN:
            module_name, attribute = WELL_KNOWN[name]
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            values[name] = getattr(module, attribute) if attribute else module
            statement = f"from {module_name} import {attribute}" if attribute else f"import {module_name}"
            if not attribute and module_name != name:
                statement += f" as {name}"
            told = "used before the report imports it" if name in late else "used but never imported"
            used_subs.append(Substitution("import", f"`{name}` {told}", f"`{statement}`", file, line))
        elif name in called and (name[:1].isupper() or name in _torchvision_builders()):
            quantizable = _EAGER_SIGNS.search(source) is not None
            found = torchvision_builder(name, quantizable)
            if found is None:
                continue
            builder, where = found
            values[name] = _builder_standin(builder, quantizable)
            variant = " (the quantizable variant: the script fuses the model or uses stubs)" if quantizable else ""
            used_subs.append(
                Substitution(
                    "model-class",
                    f"`{name}(...)`: "
                    + (
                        "imported from a package not installed here"
                        if name in uninstalled
                        else "a model class the report never shows"
                    ),
                    f"{where}(weights=None){variant}: torchvision's architecture of that name, random weights",
                    file,
                    line,
                )
            )
    return values, used_subs
