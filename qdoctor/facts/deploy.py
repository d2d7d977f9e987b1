"""What a deployment target did with the model (``qdoctor check --deploy NAME``): the programs lowered for it (the
int8 model and its float baseline), which of their ops the backend took (delegated) and which it left to the
runtime's portable kernels, the partitions and their edges, the program sizes and the runtime latencies. Torch-free:
rules read it; qdoctor.gather.deploy fills it from what the deploying flow (qdoctor/flows/) lowered and ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qdoctor.facts.measurement import Ratio, Timing

INT8, FLOAT = "int8", "float"  # the roles of the programs lowered
# a .pte read as given with no quantize/dequantize kernel outside its delegates: int8 or float inside them is not read
UNKNOWN_ROLE = "unknown"


@dataclass(frozen=True)
class ScriptLine:
    """A line of the checked script (the target's file): where the export's stack trace met the user's code."""

    line: int
    code: str


@dataclass
class OpDelegation:
    """One operator of a lowered program: how many of its nodes the backend took and how many it left."""

    op: str  # ExecuTorch's name for it: "aten_grid_sampler_2d_default"
    delegated: int
    not_delegated: int
    # the user's lines that produced its non-delegated nodes (deepest frame of the script in the export's trace)
    sources: list[ScriptLine] = field(default_factory=list)
    computes: bool = True  # False: it only makes a constant (aten.full of a torch.zeros in forward): no input tensor
    # elements of the non-delegated nodes' outputs per call, summed (what the portable kernel writes)
    elements: int = 0


@dataclass
class PartitionEdge:
    """A tensor that crosses between a delegated partition and the portable part of the program."""

    direction: str  # "out": a partition's output read by a portable op; "in": a portable op's output fed to one
    op: str  # the portable op on the other side
    elements: int  # elements of the tensor
    converted: bool  # the partition quantizes or dequantizes it at the edge (int8 <-> float)


@dataclass
class LoweredProgram:
    """One program lowered for the target (an ExecuTorch .pte)."""

    role: str  # INT8, FLOAT or (a .pte read as given) UNKNOWN_ROLE
    program_bytes: int  # the serialized program (.pte)
    partitions: int  # delegated subgraphs
    delegated_nodes: int
    not_delegated_nodes: int
    ops: list[OpDelegation] = field(default_factory=list)
    edges: list[PartitionEdge] = field(default_factory=list)
    latency: Timing | None = None  # one call in the runtime (None: not timed, see Deployment.unavailable)
    quantized_ops: int = 0  # quantize/dequantize nodes in the whole program (delegated or not; a .pte: outside)
    partitions_by_backend: dict[str, int] = field(default_factory=dict)  # a .pte: delegate calls per backend id

    def left_out(self) -> list[OpDelegation]:
        """The ops the backend did not take that compute on tensors (not the glue: getitem, constants)."""
        return [op for op in self.ops if op.not_delegated and op.computes]


@dataclass
class Deployment:
    """What ``--deploy`` lowered and measured."""

    target: str  # "executorch-xnnpack"
    backend: str  # "XNNPACK"
    runtime: str  # "ExecuTorch 1.5.1"
    quantizer: str | None  # the quantizer the int8 program was made with ("XNNPACKQuantizer", the script's own)
    quantizer_made_for: str | None = None  # the backend that quantizer is made for when it is not this one
    programs: list[LoweredProgram] = field(default_factory=list)
    speedup: Ratio | None = None  # float program time / int8 program time, from paired rounds
    # op -> the time one call of it costs in the portable kernels of the int8 program, when measured
    op_cost: dict[str, Timing] = field(default_factory=dict)
    from_pte: bool = False  # the target was a .pte file: one program, as given, no float baseline
    unavailable: dict[str, str] = field(default_factory=dict)  # what could not be done, and why

    def program(self, role: str) -> LoweredProgram | None:
        return next((p for p in self.programs if p.role == role), None)

    def subject(self) -> LoweredProgram | None:
        """The program the deployment rules judge: the int8 one, or a .pte's only program whatever its role."""
        if self.from_pte:
            return self.programs[0] if self.programs else None
        return self.program(INT8)
