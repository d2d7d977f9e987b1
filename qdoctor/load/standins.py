"""Offline stand-ins: what a bug report's script asks for that this machine cannot give, replaced while it runs.

- ``torch.hub.load("pytorch/vision...", name, pretrained=True)`` -> torchvision's ``name`` with random weights;
- torchvision ``weights=`` / ``pretrained=True``, ``load_state_dict_from_url`` of a file not in the hub cache, and
  ``torch.load`` of a checkpoint that does not exist and that the script hands to ``load_state_dict`` -> random weights (the model's own initialisation: the state
  dict handed to ``load_state_dict`` is a marker it skips);
- a torchvision dataset that is not on this disk (``download=True``, a missing root; ``ImageFolder`` on a missing
  folder) -> ``torchvision.datasets.FakeData`` with the sample shape the script's transforms produce;
- ``.cuda()`` / ``.to("cuda")`` / ``device="cuda"`` without a GPU -> the CPU.

Each one used is recorded as a ``Substitution`` (the report lists them). Nothing here touches the network: a stand-in
is used exactly where the real call would have downloaded. Numbers measured with stand-ins are valid for speed (same
architecture, same shapes), not for accuracy (random weights, random images).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from qdoctor.facts import SourceLocation, Substitution
from qdoctor.facts.location import user_frame
from qdoctor.load.left_out import OfflineUnavailable
from qdoctor.load.when_imported import when_imported

FAKE_DATASET_SIZE = 64
# The raw sample shape (C, H, W) of the datasets qdoctor stands in for (before the script's transforms) and their
# number of classes; any other torchvision dataset gets 3x256x256 images and 10 classes.
_DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "MNIST": ((1, 28, 28), 10),
    "FashionMNIST": ((1, 28, 28), 10),
    "KMNIST": ((1, 28, 28), 10),
    "EMNIST": ((1, 28, 28), 47),
    "QMNIST": ((1, 28, 28), 10),
    "CIFAR10": ((3, 32, 32), 10),
    "CIFAR100": ((3, 32, 32), 100),
    "SVHN": ((3, 32, 32), 10),
    "STL10": ((3, 96, 96), 10),
    "ImageNet": ((3, 256, 256), 1000),
    "Imagenette": ((3, 256, 256), 10),
    "Food101": ((3, 256, 256), 101),
    "Flowers102": ((3, 256, 256), 102),
    "OxfordIIITPet": ((3, 256, 256), 37),
    "StanfordCars": ((3, 256, 256), 196),
    "Caltech101": ((3, 256, 256), 101),
    "ImageFolder": ((3, 256, 256), 10),
    "DatasetFolder": ((3, 256, 256), 10),
}


class RandomWeights(dict[str, Any]):
    """The state dict of weights that are not on this machine: ``load_state_dict`` keeps the model's own random
    initialisation. Indexing it (``checkpoint["state_dict"]``) gives another marker."""

    def __missing__(self, key: Any) -> RandomWeights:
        return RandomWeights()


class StandIns:
    """Installs the stand-ins for the duration of a ``with`` block and records the ones used."""

    def __init__(self, user_file: str, enabled: bool = True, source: str = "") -> None:
        self.user_file = str(Path(user_file).resolve())
        self.source_lines = source.splitlines()  # the script that runs (a report's Python), set by run_script
        self.enabled = enabled
        self.used: list[Substitution] = []
        self._seen: set[tuple[str, str, int | None]] = set()
        self.loaded_random_weights = False

    def feeds_load_state_dict(self, where: SourceLocation | None) -> bool:
        """The user's line loads weights: it calls load_state_dict, or binds a name that the script hands to
        load_state_dict (``ckpt = torch.load(p)`` ... ``model.load_state_dict(ckpt["model"])``). Anything else read
        with torch.load (labels, features) is data, not weights: no stand-in for it."""
        if where is None or not 0 < where.line <= len(self.source_lines):
            return False
        code = self.source_lines[where.line - 1]
        if "load_state_dict" in code:
            return True
        bound = re.match(r"\s*(\w+)\s*(?::[^=]+)?=[^=]", code)
        source = "\n".join(self.source_lines)
        return bound is not None and re.search(rf"load_state_dict\(\s*{bound.group(1)}\b", source) is not None

    # ---- recording ----
    def record(self, kind: str, requested: str, instead: str) -> None:
        where = user_frame(sys._getframe(1), self.user_file)
        line = where.line if where else None
        key = (kind, requested, line)
        if key in self._seen:
            return
        self._seen.add(key)
        self.used.append(Substitution(kind, requested, instead, self.user_file if line else None, line))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with contextlib.ExitStack() as stack:
            for install in (self._weights, self._hub, self._checkpoints, self._datasets, self._cuda):
                stack.enter_context(install())
            yield

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (the script's evaluate() or calibration_data()) run with the stand-ins installed."""
        if not self.enabled:
            return fn

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.installed():
                return fn(*args, **kwargs)

        return wrapped

    # ---- weights ----
    @contextlib.contextmanager
    def _weights(self) -> Iterator[None]:
        patches = _Patches()
        original_load_state_dict = nn.Module.load_state_dict
        stand_ins = self

        def load_state_dict(module: nn.Module, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(state_dict, RandomWeights) or (not state_dict and stand_ins.loaded_random_weights):
                from torch.nn.modules.module import _IncompatibleKeys

                return _IncompatibleKeys([], [])
            return original_load_state_dict(module, state_dict, *args, **kwargs)

        patches.set(nn.Module, "load_state_dict", load_state_dict)
        cached = _hub_cached

        def from_url(original: Callable[..., Any]) -> Callable[..., Any]:
            def load(url: str, *args: Any, **kwargs: Any) -> Any:
                if cached(url, kwargs.get("file_name")):
                    return original(url, *args, **kwargs)
                stand_ins.loaded_random_weights = True
                stand_ins.record("pretrained-weights", f"weights from {url}", "random weights (not downloaded)")
                return RandomWeights()

            return load

        import torch.hub

        patches.set(torch.hub, "load_state_dict_from_url", from_url(torch.hub.load_state_dict_from_url))
        import torch.utils.model_zoo as model_zoo

        patches.set(model_zoo, "load_url", from_url(model_zoo.load_url))

        def patch_weights_enum(api: ModuleType) -> None:
            weights_enum = api.WeightsEnum
            original_get = weights_enum.get_state_dict

            def get_state_dict(weights: Any, *args: Any, **kwargs: Any) -> Any:
                if cached(weights.url, None):
                    return original_get(weights, *args, **kwargs)
                stand_ins.loaded_random_weights = True
                stand_ins.record(
                    "pretrained-weights",
                    f"torchvision weights {type(weights).__name__}.{weights.name}",
                    "the same architecture with random weights (not downloaded)",
                )
                return RandomWeights()

            patches.set(weights_enum, "get_state_dict", get_state_dict)

        # torchvision's WeightsEnum (what ``weights=`` / ``pretrained=True`` load through), patched when the script
        # imports torchvision (importing it here would cost every check about half a second)
        with patches, when_imported("torchvision.models._api", patch_weights_enum):
            yield

    @contextlib.contextmanager
    def _hub(self) -> Iterator[None]:
        import torch.hub

        patches = _Patches()
        original = torch.hub.load
        stand_ins = self

        def load(repo_or_dir: str, model: str, *args: Any, **kwargs: Any) -> Any:
            source = kwargs.get("source", "github")
            vision = source == "github" and str(repo_or_dir).split(":")[0].rstrip("/") in ("pytorch/vision",)
            if not vision or os.path.isdir(str(repo_or_dir)):
                try:
                    return original(repo_or_dir, model, *args, **kwargs)
                except (RuntimeError, OSError) as exc:
                    if source != "github" or not _offline(exc):
                        raise
                    raise OfflineUnavailable(
                        f"torch.hub.load({repo_or_dir!r}, {model!r}) needs that GitHub repository, which is not in "
                        "torch.hub's cache; qdoctor has no stand-in for a model outside torchvision"
                    ) from exc
            import torchvision

            builder = torchvision.models.get_model_builder(model)
            options = {k: v for k, v in kwargs.items() if k not in ("pretrained", "weights", "source", "force_reload")}
            options.pop("skip_validation", None)
            options.pop("trust_repo", None)
            options.pop("verbose", None)
            built = builder(*args, weights=None, **options)
            asked = "pretrained " if kwargs.get("pretrained") or kwargs.get("weights") else ""
            stand_ins.record(
                "hub-model",
                f"torch.hub.load({repo_or_dir!r}, {model!r}): {asked}{model} from GitHub",
                f"torchvision.models.{model}(weights=None) from the installed torchvision {torchvision.__version__}: "
                "the same architecture with random weights",
            )
            return built

        patches.set(torch.hub, "load", load)
        with patches:
            yield

    @contextlib.contextmanager
    def _checkpoints(self) -> Iterator[None]:
        patches = _Patches()
        original = torch.load
        stand_ins = self

        def load(f: Any, *args: Any, **kwargs: Any) -> Any:
            missing = isinstance(f, (str, os.PathLike)) and not os.path.exists(f)
            if missing and stand_ins.feeds_load_state_dict(user_frame(sys._getframe(1), stand_ins.user_file)):
                stand_ins.loaded_random_weights = True
                stand_ins.record("checkpoint", f"torch.load({os.fspath(f)!r}): no such file", "random weights")
                return RandomWeights()
            return original(f, *args, **kwargs)

        patches.set(torch, "load", load)
        with patches:
            yield

    # ---- datasets ----
    @contextlib.contextmanager
    def _datasets(self) -> Iterator[None]:
        patches = _Patches()

        def patch_datasets(datasets: ModuleType) -> None:
            for name, (shape, classes) in _DATASETS.items():
                cls = getattr(datasets, name, None)
                if isinstance(cls, type):
                    patches.set(cls, "__new__", self._dataset_new(cls, shape, classes))
                    patches.set(cls, "__init__", _skip_if_built(_own_init(cls)))

        # patched when the script imports torchvision, as its weights are
        with patches, when_imported("torchvision.datasets", patch_datasets):
            yield

    def _dataset_new(self, cls: type, shape: tuple[int, int, int], classes: int) -> Callable[..., Any]:
        stand_ins = self
        init = _own_init(cls)

        def new(klass: type, *args: Any, **kwargs: Any) -> Any:
            instance: Any = object.__new__(klass)
            if klass is not cls:  # a subclass the script defines: built as written
                return instance
            local = dict(kwargs)
            if "download" in local:
                local["download"] = False  # never download: what is on the disk, else the stand-in
            try:
                init(instance, *args, **local)
            except Exception as exc:
                root = args[0] if args else kwargs.get("root", "")
                return stand_ins._fake_dataset(cls.__name__, root, shape, classes, kwargs, exc)
            instance.__dict__["_qdoctor_built"] = True
            return instance

        return new

    def _fake_dataset(
        self, name: str, root: Any, shape: tuple[int, int, int], classes: int, kwargs: dict[str, Any], exc: Exception
    ) -> Any:
        from torchvision.datasets import FakeData

        fake = FakeData(
            size=FAKE_DATASET_SIZE,
            image_size=shape,
            num_classes=classes,
            transform=kwargs.get("transform"),
            target_transform=kwargs.get("target_transform"),
        )
        try:
            sample = fake[0][0]
            produced = (
                "x".join(str(d) for d in sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            )
        except Exception:
            produced = "x".join(str(d) for d in shape)
        asked = "download=True" if kwargs.get("download") else f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        self.record(
            "dataset",
            f"{name}(root={os.fspath(root) if isinstance(root, (str, os.PathLike)) else root!r}) ({asked})",
            f"FakeData({FAKE_DATASET_SIZE} random samples of {produced} after the script's transforms, "
            f"{classes} classes)",
        )
        return fake

    # ---- CUDA ----
    @contextlib.contextmanager
    def _cuda(self) -> Iterator[None]:
        if torch.cuda.is_available():
            yield
            return
        patches = _Patches()
        stand_ins = self

        def on_cpu(value: Any) -> Any:
            if isinstance(value, (str, torch.device)):
                try:
                    device = torch.device(value)
                except (RuntimeError, TypeError):
                    return value
                if device.type == "cuda":
                    stand_ins.record("cuda", f"device {str(value)!r}", "the CPU (no GPU on this machine)")
                    return torch.device("cpu")
            return value

        def to(original: Callable[..., Any]) -> Callable[..., Any]:
            def moved(self: Any, *args: Any, **kwargs: Any) -> Any:
                args = tuple(on_cpu(a) for a in args)
                if "device" in kwargs:
                    kwargs["device"] = on_cpu(kwargs["device"])
                return original(self, *args, **kwargs)

            return moved

        def cuda(self: Any, *args: Any, **kwargs: Any) -> Any:
            stand_ins.record("cuda", ".cuda()", "the CPU (no GPU on this machine)")
            return self

        for owner in (torch.Tensor, nn.Module):
            patches.set(owner, "to", to(owner.to))
            patches.set(owner, "cuda", cuda)

        def factory(original: Callable[..., Any]) -> Callable[..., Any]:
            def made(*args: Any, **kwargs: Any) -> Any:
                if "device" in kwargs:
                    kwargs["device"] = on_cpu(kwargs["device"])
                return original(*args, **kwargs)

            return made

        for name in (
            "randn",
            "rand",
            "randint",
            "zeros",
            "ones",
            "empty",
            "full",
            "tensor",
            "as_tensor",
            "arange",
            "linspace",
            "eye",
            "randn_like",
            "rand_like",
            "zeros_like",
            "ones_like",
            "empty_like",
        ):
            if hasattr(torch, name):
                patches.set(torch, name, factory(getattr(torch, name)))
        for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
            if hasattr(torch.cuda, name):
                patches.set(torch.cuda, name, lambda *args, **kwargs: None)
        with patches:
            yield


def _own_init(cls: type) -> Callable[..., None]:
    """The __init__ a class runs (its own or the nearest base's), read without binding."""
    init: Callable[..., None] = next(vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k))
    return init


def _skip_if_built(init: Callable[..., Any]) -> Callable[..., Any]:
    """The dataset's __init__, skipped when the stand-in's __new__ already built the instance (Python calls __init__
    again on what __new__ returns)."""

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.pop("_qdoctor_built", False):
            return
        init(self, *args, **kwargs)

    return wrapped


def _offline(exc: BaseException) -> bool:
    """``exc`` is torch.hub failing to reach the network (no connection, a name that does not resolve, a refused
    socket), not the repository's own error."""
    import urllib.error

    if isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)):
        return True
    return "no internet connection" in str(exc) or isinstance(exc.__cause__, (urllib.error.URLError, OSError))


def _hub_cached(url: str, file_name: str | None) -> bool:
    """The file behind ``url`` is already in torch.hub's checkpoint cache (loading it needs no network)."""
    from urllib.parse import urlparse

    import torch.hub

    name = file_name or os.path.basename(urlparse(url).path)
    return bool(name) and os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", name))


class _Patches:
    """Attributes set for the duration of a ``with`` block, each restored (or deleted when it was not there)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, bool, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        had = name in vars(owner) if isinstance(owner, type) else hasattr(owner, name)
        self._saved.append((owner, name, had, vars(owner).get(name) if had else None))
        setattr(owner, name, value)

    def __enter__(self) -> _Patches:
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, had, value in reversed(self._saved):
            if had:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
        self._saved.clear()
