"""The healthy-recipe sweep: reference quantization recipes, as their authors publish them, on random weights. Each
must come out of qdoctor with no warning or error finding, except a cause qdoctor measured and that is true
(``Recipe.known``: code -> why it is true, written down in the table of bench/RESULTS.md).

``tests/matrix/test_sweep.py`` checks the CI ones (``Recipe.ci``) without timing; ``bench/sweep.py`` checks all of
them with timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .models import transformers_installed
from .outcome import CRASH


@dataclass(frozen=True)
class Recipe:
    name: str
    link: str
    source: str
    ci: bool = False
    # warning/error codes that are a measured true cause on this recipe: code -> the cause (documented in the table)
    known: dict[str, str] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"sweep__{self.name}.py"
        path.write_text(f"# healthy-recipe sweep: {self.name}\n# {self.link}\n{self.source}", encoding="utf-8")
        return path


# The tutorial's recipe itself raises on resnet18 with torch 2.14.1 + torchao 0.18 (reproduced without qdoctor:
# `python bench/.matrix/sweep/sweep__pt2e_x86_inductor_resnet18.py`; also with BatchNorm folded into the convs and
# with ReLU not in place): X86InductorQuantizer's conv + add (+ relu) annotation finds a partition with two output
# nodes. A true crash of the recipe on this stack, reported by qdoctor as the failed prepare_pt2e step.
_PT2E_KNOWN = {
    "resnet18": {
        "QD017": "the recipe raises inside prepare_pt2e on this stack (torch 2.14.1, torchao 0.18), without qdoctor "
        "too: X86InductorQuantizer's conv-add annotation fails on ResNet's residual blocks ('Input partition has "
        "more than one output node')",
        CRASH: "Input partition has more than one output node",
    }
}

# Measured (torch.utils.benchmark, x86 engine, 1x16x16 input): an int8 depthwise 3x3 Conv2d with 116, 122 or 244
# channels takes 2-9 ms against 0.2 ms in fp32 (11-42x slower), while 24, 48, 58, 96, 128, 176 or 232 channels run
# faster than fp32. ShuffleNetV2 x2.0's branches have 122 and 244 channels.
_TV_KNOWN = {
    "shufflenet_v2_x2_0": {
        "QD023": "measured: an int8 depthwise 3x3 conv of 122 or 244 channels (ShuffleNetV2 x2.0's stage 2 and 3 "
        "branches) runs 11-42x slower than in fp32 on the x86 engine (2-9 ms against 0.2 ms; 58, 128 or 232 channels "
        "do not), so keeping those layers in float is the fix QD023 names"
    }
}

# torchvision's quantizable models and the input size each is run at (inception_v3 needs at least 75x75)
TORCHVISION = {
    "googlenet": ("googlenet", ", aux_logits=False, init_weights=False", 64),
    "inception_v3": ("inception_v3", ", aux_logits=False, init_weights=False", 96),
    "mobilenet_v2": ("mobilenet_v2", "", 64),
    "mobilenet_v3_large": ("mobilenet_v3_large", "", 64),
    "resnet18": ("resnet18", "", 64),
    "resnet50": ("resnet50", "", 64),
    "resnext101_32x8d": ("resnext101_32x8d", "", 64),
    "resnext101_64x4d": ("resnext101_64x4d", "", 64),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", "", 64),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", "", 64),
    "shufflenet_v2_x1_5": ("shufflenet_v2_x1_5", "", 64),
    "shufflenet_v2_x2_0": ("shufflenet_v2_x2_0", "", 64),
}

_TV_PTQ = """import copy

import torch
import torchvision

backend = "x86"
torch.backends.quantized.engine = backend
torch.manual_seed(0)
model = torchvision.models.quantization.{builder}(weights=None, quantize=False{extra})
model.eval()
float_model = copy.deepcopy(model)

# references/classification/train_quantization.py, --post-training-quantize
model.fuse_model(is_qat=False)
model.qconfig = torch.ao.quantization.get_default_qconfig(backend)
torch.ao.quantization.prepare(model, inplace=True)
with torch.no_grad():  # calibration: a few batches
    for _ in range(3):
        model(torch.randn(2, 3, {size}, {size}))
torch.ao.quantization.convert(model, inplace=True)
quantized_model = model
example_inputs = (torch.randn(1, 3, {size}, {size}),)
"""

_FX_PTQ = """import copy

import torch
import torchvision
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

torch.manual_seed(0)
float_model = torchvision.models.{builder}(weights=None).eval()
example_inputs = (torch.randn(1, 3, 64, 64),)
qconfig_mapping = get_default_qconfig_mapping("x86")
prepared = prepare_fx(copy.deepcopy(float_model), qconfig_mapping, example_inputs)
with torch.no_grad():
    for _ in range(3):
        prepared(torch.randn(2, 3, 64, 64))
quantized_model = convert_fx(prepared)
"""

_PT2E = """import torch
import torchvision
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

torch.manual_seed(0)
float_model = torchvision.models.{builder}(weights=None).eval()
example_inputs = (torch.randn(1, 3, 64, 64),)
quantizer = xiq.X86InductorQuantizer()
quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
exported = torch.export.export(float_model, example_inputs).module()
prepared = prepare_pt2e(exported, quantizer)
with torch.no_grad():
    for _ in range(3):  # the exported graph has the example's static shape: batch 1
        prepared(torch.randn(1, 3, 64, 64))
    converted = convert_pt2e(prepared)
    torch._inductor.config.freezing = True  # the recipe's lowering: Inductor with freezing
    quantized_model = torch.compile(converted)
    quantized_model(*example_inputs)
"""

_BERT = (
    """from transformers import BertConfig, BertForSequenceClassification

torch.manual_seed(0)
config = BertConfig(
    vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
    max_position_embeddings=128, num_labels=2,
)
float_model = BertForSequenceClassification(config).eval()
"""
    if transformers_installed()
    else """class BertSmall(nn.Module):
    def __init__(self, vocab=1000, dim=128, heads=4, layers=2, labels=2):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.classifier = nn.Linear(dim, labels)

    def forward(self, input_ids, attention_mask=None):
        return self.classifier(self.encoder(self.embeddings(input_ids))[:, 0])


torch.manual_seed(0)
float_model = BertSmall().eval()
"""
)

_BERT_DYNAMIC = f"""import torch
import torch.nn as nn

{_BERT}
# the dynamic quantization BERT tutorial: quantize_dynamic on every nn.Linear
quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {{nn.Linear}}, dtype=torch.qint8)
input_ids = torch.randint(0, 1000, (1, 64))
example_inputs = (input_ids, torch.ones_like(input_ids))
"""

_BERT_TORCHAO = f"""import copy

import torch
import torch.nn as nn
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

{_BERT}
quantized_model = copy.deepcopy(float_model)
quantize_(quantized_model, Int8DynamicActivationInt8WeightConfig())
input_ids = torch.randint(0, 1000, (1, 64))
example_inputs = (input_ids, torch.ones_like(input_ids))
"""

_CI = {"resnet18"}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        *(
            Recipe(
                f"tv_ptq_{name}",
                "https://github.com/pytorch/vision/blob/main/references/classification/train_quantization.py",
                _TV_PTQ.format(builder=builder, extra=extra, size=size),
                ci=name in _CI,
                known=_TV_KNOWN.get(name, {}),
            )
            for name, (builder, extra, size) in TORCHVISION.items()
        ),
        *(
            Recipe(
                f"fx_ptq_{name}",
                "https://pytorch.org/tutorials/prototype/fx_graph_mode_ptq_static.html",
                _FX_PTQ.format(builder=name),
                ci=name == "mobilenet_v2",
            )
            for name in ("resnet18", "mobilenet_v2")
        ),
        *(
            Recipe(
                f"pt2e_x86_inductor_{name}",
                "https://pytorch.org/tutorials/prototype/pt2e_quant_x86_inductor.html",
                _PT2E.format(builder=name),
                known=_PT2E_KNOWN.get(name, {}),
            )
            for name in ("resnet18", "mobilenet_v2")
        ),
        Recipe(
            "bert_dynamic",
            "https://pytorch.org/tutorials/intermediate/dynamic_quantization_bert_tutorial.html",
            _BERT_DYNAMIC,
            ci=True,
        ),
        Recipe(
            "bert_torchao_int8_dynamic",
            "https://github.com/pytorch/ao/tree/main/torchao/quantization#a8w8-int8-dynamic-quantization",
            _BERT_TORCHAO,
            ci=True,
            known={
                "QD013": "measured (bench/sweep.py, profile): at hidden size 128, eager mode, the per-call activation "
                "quantization around each int8 Linear costs more than its int8 matmul saves; the int8 model measured "
                "slower than fp32. torchao's int8 dynamic recipe pays off under torch.compile and at larger sizes"
            },
        ),
    )
}


def ci_recipes() -> list[Recipe]:
    return [r for r in RECIPES.values() if r.ci]
