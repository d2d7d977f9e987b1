"""The models of the fault-injection matrix: each is the source of a script's model section, defining
``make_model()`` (the float model, in train mode as constructors leave it) and ``make_inputs()`` (one batch: a tuple
of positional arguments, or a dict of keyword arguments), with what a fault needs to know about it.

A model's source depends on three switches a fault may turn off (``Variant``): the QuantStub at the input, the
DeQuantStub at the output, and FloatFunctional for its adds and concatenations. Random weights, nothing downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    quant_stub: bool = True
    dequant_stub: bool = True
    float_functional: bool = True


HEALTHY = Variant()


@dataclass(frozen=True)
class Model:
    name: str
    source: Callable[[Variant], str]
    # eager static quantization (stubs, fusion, qconfig, prepare, convert) is this model's recipe; else dynamic
    static: bool = True
    convs: bool = False  # has Conv layers (dynamic quantization of convs, PT2E)
    stubs_in_source: bool = False  # its QuantStub/DeQuantStub are written in the script (a fault can leave them out)
    adds: bool = False  # adds or concatenations a FloatFunctional variant exists for
    conv_transpose: bool = False
    mode_dependent: bool = True  # has BatchNorm or Dropout: train mode changes what it computes
    dict_inputs: bool = False  # make_inputs() returns keyword arguments
    # how the script fuses the float model {m} (in place or rebound), for inference and for QAT; None: nothing to fuse
    fuse: str | None = None
    fuse_qat: str | None = None
    # the float-functional variant keeps the same fusion (False: it is another model, e.g. torchvision's plain one,
    # without fuse_model())
    fuse_plain: bool = True
    # a line after the global qconfig, for layers the global qconfig does not fit ({m}: the float model)
    qconfig_override: str | None = None
    dynamic_modules: str = "{nn.Linear}"
    small: bool = False  # cheap enough for the CI subset

    def call(self, model: str, batch: str, natural: bool = True) -> str:
        """The call of ``model`` on one batch ``batch`` (a dict of keyword arguments for dict models unless the
        style turned the batch into a tuple)."""
        return f"{model}(**{batch})" if self.dict_inputs and natural else f"{model}(*{batch})"

    def applicable_variant(self, variant: Variant) -> bool:
        if variant == HEALTHY:
            return True
        if not variant.float_functional:
            return self.adds
        return self.stubs_in_source


def _torchvision(builder: str, extra: str = "") -> Callable[[Variant], str]:
    """torchvision's quantizable model (stubs and FloatFunctional inside); the float-functional fault takes the plain
    torchvision model instead, wrapped in QuantWrapper: its adds and concatenations are plain torch ops."""

    def source(variant: Variant) -> str:
        if not variant.float_functional:
            return (
                f"from torchvision.models import {builder}\n\n\n"
                "def make_model():\n"
                "    torch.manual_seed(0)\n"
                f"    return tq.QuantWrapper({builder}(weights=None{extra}))\n\n\n"
                "def make_inputs():\n"
                "    return (torch.randn(1, 3, 64, 64),)\n"
            )
        return (
            f"from torchvision.models.quantization import {builder}\n\n\n"
            "def make_model():\n"
            "    torch.manual_seed(0)\n"
            f"    return {builder}(weights=None, quantize=False{extra})\n\n\n"
            "def make_inputs():\n"
            "    return (torch.randn(1, 3, 64, 64),)\n"
        )

    return source


def _stubs(variant: Variant) -> tuple[str, str, str, str]:
    """The __init__ lines and the forward expressions of the two stubs (absent ones pass the tensor through)."""
    init_q = "        self.quant = tq.QuantStub()\n" if variant.quant_stub else ""
    init_dq = "        self.dequant = tq.DeQuantStub()\n" if variant.dequant_stub else ""
    q = "self.quant(x)" if variant.quant_stub else "x"
    return init_q, init_dq, q, "self.dequant" if variant.dequant_stub else ""


def _residual_cnn(variant: Variant) -> str:
    init_q, init_dq, q, dq = _stubs(variant)
    skip_init = "        self.skip = nn.quantized.FloatFunctional()\n" if variant.float_functional else ""
    add = "self.skip.add(out, x)" if variant.float_functional else "out + x"
    return (
        "class Block(nn.Module):\n"
        "    def __init__(self, channels):\n"
        "        super().__init__()\n"
        "        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)\n"
        "        self.bn1 = nn.BatchNorm2d(channels)\n"
        "        self.relu1 = nn.ReLU()\n"
        "        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)\n"
        "        self.bn2 = nn.BatchNorm2d(channels)\n"
        f"{skip_init}"
        "        self.relu2 = nn.ReLU()\n\n"
        "    def forward(self, x):\n"
        "        out = self.relu1(self.bn1(self.conv1(x)))\n"
        "        out = self.bn2(self.conv2(out))\n"
        f"        return self.relu2({add})\n\n\n"
        "class SmallResNet(nn.Module):\n"
        "    def __init__(self, classes=10):\n"
        "        super().__init__()\n"
        f"{init_q}"
        "        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)\n"
        "        self.stem_bn = nn.BatchNorm2d(16)\n"
        "        self.stem_relu = nn.ReLU()\n"
        "        self.block1 = Block(16)\n"
        "        self.block2 = Block(16)\n"
        "        self.pool = nn.AdaptiveAvgPool2d(1)\n"
        "        self.fc = nn.Linear(16, classes)\n"
        f"{init_dq}\n"
        "    def forward(self, x):\n"
        f"        x = self.stem_relu(self.stem_bn(self.stem({q})))\n"
        "        x = self.block2(self.block1(x))\n"
        "        x = torch.flatten(self.pool(x), 1)\n"
        f"        return {dq}(self.fc(x))\n\n\n"
        "FUSE = [\n"
        '    ["stem", "stem_bn", "stem_relu"],\n'
        '    ["block1.conv1", "block1.bn1", "block1.relu1"],\n'
        '    ["block1.conv2", "block1.bn2"],\n'
        '    ["block2.conv1", "block2.bn1", "block2.relu1"],\n'
        '    ["block2.conv2", "block2.bn2"],\n'
        "]\n\n\n"
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return SmallResNet()\n\n\n"
        "def make_inputs():\n"
        "    return (torch.randn(2, 3, 32, 32),)\n"
    )


def _upsampler(variant: Variant) -> str:
    init_q, init_dq, q, dq = _stubs(variant)
    skip_init = "        self.skip = nn.quantized.FloatFunctional()\n" if variant.float_functional else ""
    cat = "self.skip.cat([y, x], dim=1)" if variant.float_functional else "torch.cat([y, x], dim=1)"
    return (
        "class UpNet(nn.Module):\n"
        '    """A small encoder-decoder: a strided conv down, a ConvTranspose2d up, the input concatenated back."""\n\n'
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"{init_q}"
        "        self.enc = nn.Conv2d(3, 16, 3, stride=2, padding=1)\n"
        "        self.enc_relu = nn.ReLU()\n"
        "        self.mid = nn.Conv2d(16, 16, 3, padding=1)\n"
        "        self.mid_relu = nn.ReLU()\n"
        "        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)\n"
        f"{skip_init}"
        "        self.head = nn.Conv2d(8 + 3, 4, 1)\n"
        f"{init_dq}\n"
        "    def forward(self, x):\n"
        f"        x = {q}\n"
        "        y = self.mid_relu(self.mid(self.enc_relu(self.enc(x))))\n"
        f"        y = {cat.replace('[y, x]', '[self.up(y), x]')}\n"
        f"        return {dq}(self.head(y))\n\n\n"
        'FUSE = [["enc", "enc_relu"], ["mid", "mid_relu"]]\n\n\n'
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return UpNet()\n\n\n"
        "def make_inputs():\n"
        "    return (torch.randn(1, 3, 32, 32),)\n"
    )


def _mlp(variant: Variant) -> str:
    init_q, init_dq, q, dq = _stubs(variant)
    return (
        "class MLP(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"{init_q}"
        "        self.fc1 = nn.Linear(32, 64)\n"
        "        self.relu1 = nn.ReLU()\n"
        "        self.drop = nn.Dropout(0.2)\n"
        "        self.fc2 = nn.Linear(64, 64)\n"
        "        self.relu2 = nn.ReLU()\n"
        "        self.fc3 = nn.Linear(64, 10)\n"
        f"{init_dq}\n"
        "    def forward(self, x):\n"
        f"        x = self.drop(self.relu1(self.fc1({q})))\n"
        "        x = self.relu2(self.fc2(x))\n"
        f"        return {dq}(self.fc3(x))\n\n\n"
        'FUSE = [["fc1", "relu1"], ["fc2", "relu2"]]\n\n\n'
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return MLP()\n\n\n"
        "def make_inputs():\n"
        "    return (torch.randn(4, 32),)\n"
    )


def _lstm_lm(variant: Variant) -> str:
    return (
        "class WordLM(nn.Module):\n"
        '    """The word-language-model of the dynamic quantization tutorial, small: embedding, LSTM, decoder."""\n\n'
        "    def __init__(self, ntoken=200, ninp=64, nhid=64, nlayers=2, dropout=0.2):\n"
        "        super().__init__()\n"
        "        self.drop = nn.Dropout(dropout)\n"
        "        self.encoder = nn.Embedding(ntoken, ninp)\n"
        "        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)\n"
        "        self.decoder = nn.Linear(nhid, ntoken)\n"
        "        self.nlayers, self.nhid = nlayers, nhid\n\n"
        "    def forward(self, input, hidden):\n"
        "        emb = self.drop(self.encoder(input))\n"
        "        output, hidden = self.rnn(emb, hidden)\n"
        "        return self.decoder(self.drop(output)), hidden\n\n"
        "    def init_hidden(self, bsz):\n"
        "        weight = next(self.parameters())\n"
        "        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))\n"
        "\n\n"
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return WordLM()\n\n\n"
        "def make_inputs():\n"
        "    tokens = torch.randint(0, 200, (20, 1))\n"
        "    return (tokens, (torch.zeros(2, 1, 64), torch.zeros(2, 1, 64)))\n"
    )


def transformers_installed() -> bool:
    return importlib.util.find_spec("transformers") is not None


def _bert_small(variant: Variant) -> str:
    """A BERT-small encoder: transformers' BertModel with a small config when transformers is installed, else the
    same shape of model from torch.nn (embeddings, TransformerEncoder, pooler) with BertModel's keyword arguments."""
    inputs = (
        "def make_inputs():\n"
        "    input_ids = torch.randint(0, 500, (1, 32))\n"
        '    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}\n'
    )
    if transformers_installed():
        return (
            "from transformers import BertConfig, BertModel\n\n\n"
            "def make_model():\n"
            "    torch.manual_seed(0)\n"
            "    config = BertConfig(\n"
            "        vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,\n"
            "        intermediate_size=128, max_position_embeddings=64,\n"
            "    )\n"
            "    return BertModel(config)\n\n\n" + inputs
        )
    return (
        "class BertSmall(nn.Module):\n"
        "    def __init__(self, vocab=500, dim=64, heads=4, layers=2):\n"
        "        super().__init__()\n"
        "        self.embeddings = nn.Embedding(vocab, dim)\n"
        "        self.positions = nn.Embedding(64, dim)\n"
        "        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.1, batch_first=True)\n"
        "        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)\n"
        "        self.pooler = nn.Linear(dim, dim)\n\n"
        "    def forward(self, input_ids, attention_mask=None):\n"
        "        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)\n"
        "        hidden = self.embeddings(input_ids) + self.positions(positions)\n"
        "        padding = None if attention_mask is None else attention_mask == 0\n"
        "        hidden = self.encoder(hidden, src_key_padding_mask=padding)\n"
        "        return hidden, torch.tanh(self.pooler(hidden[:, 0]))\n\n\n"
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return BertSmall()\n\n\n" + inputs
    )


_TV_FUSE = "{m}.fuse_model()"
_TV_FUSE_QAT = "{m}.fuse_model(is_qat=True)"
_LIST_FUSE = "{m} = tq.fuse_modules({m}, FUSE)"
_LIST_FUSE_QAT = "{m} = tq.fuse_modules_qat({m}, FUSE)"

MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model("mlp", _mlp, stubs_in_source=True, fuse=_LIST_FUSE, fuse_qat=_LIST_FUSE_QAT, small=True),
        Model(
            "residual_cnn",
            _residual_cnn,
            convs=True,
            stubs_in_source=True,
            adds=True,
            fuse=_LIST_FUSE,
            fuse_qat=_LIST_FUSE_QAT,
            small=True,
        ),
        Model(
            "upsampler",
            _upsampler,
            convs=True,
            stubs_in_source=True,
            adds=True,
            conv_transpose=True,
            mode_dependent=False,
            fuse=_LIST_FUSE,
            fuse_qat=_LIST_FUSE_QAT,
            # ConvTranspose takes per-tensor weights only: the recipe gives it its own qconfig
            qconfig_override="{m}.up.qconfig = tq.QConfig(activation={m}.qconfig.activation, weight=tq.default_weight_observer)",
            small=True,
        ),
        Model("lstm_lm", _lstm_lm, static=False, dynamic_modules="{nn.LSTM, nn.Linear}", small=True),
        Model("bert_small", _bert_small, static=False, dict_inputs=True),
        Model(
            "resnet18",
            _torchvision("resnet18"),
            convs=True,
            adds=True,
            fuse=_TV_FUSE,
            fuse_qat=_TV_FUSE_QAT,
            fuse_plain=False,
        ),
        Model(
            "mobilenet_v2",
            _torchvision("mobilenet_v2"),
            convs=True,
            adds=True,
            fuse=_TV_FUSE,
            fuse_qat=_TV_FUSE_QAT,
            fuse_plain=False,
        ),
        Model(
            "mobilenet_v3",
            _torchvision("mobilenet_v3_large"),
            convs=True,
            adds=True,
            fuse=_TV_FUSE,
            fuse_qat=_TV_FUSE_QAT,
            fuse_plain=False,
        ),
        Model(
            "googlenet",
            _torchvision("googlenet", ", aux_logits=False, init_weights=False"),
            convs=True,
            adds=True,
            fuse=_TV_FUSE,
            fuse_qat=_TV_FUSE_QAT,
            fuse_plain=False,
        ),
    )
}
