"""How each framework's profiled operations sort into the categories that compare across frameworks
(`benchmarks.harness.profiling.CATEGORIES`): one table of name rules per framework, and the readers
of what the profilers write that need no framework (an XLA module's HLO text and its thunks in a
trace, a thread's nested timeline, a GPU's kernels by the op that launched them). Plain regular
expressions, so the rules are testable without importing any framework; each adapter's
`op_category` is one of the functions below."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Rules = list[tuple[str, str]]

# --- Rules, by each framework's op names ---------------------------------------------------------

# (pattern, category) pairs, the first match wins; searched in the op's name (case-sensitive).
TORCH_RULES = [
    (r"convolution_backward|ConvolutionBackward", "convolution backward"),
    (r"conv", "convolution forward"),  # aten::convolution, its mkldnn_convolution, inductor's extern calls
    (r"\baten::(addmm|mm|bmm|matmul|linear)\b|AddmmBackward|MmBackward", "matmul"),
    (r"max_pool|MaxPool", "pooling"),
    (r"batch_norm|BatchNorm", "normalization"),
    (r"Optimizer\.|_foreach_|\bsgd\b", "optimizer"),
    (r"\baten::(copy_|to|_to_copy|clone|contiguous|empty_strided)\b|Memcpy|pin_memory", "data transfer"),
    (r"cpp_fused|triton_|\baten::(relu|threshold|add|mul|div|sub|sum|mean|log_softmax|_log_softmax|nll_loss|"
     r"clamp|exp|neg|fill_|zero_|zeros|ones_like|where|max|amax|cat|reshape|view)", "elementwise"),
]

TF_RULES = [  # on "op_name:OpType"; oneDNN kernels carry an _Mkl/_MklNative prefix on the type
    (r"^(?i:[^/:]*(?:sgd|optimizer))[/:]", "optimizer"),  # ops under the optimizer's name scope
    (r":\w*Conv2DBackprop(Filter|Input)", "convolution backward"),
    (r":\w*Conv2D\w*$", "convolution forward"),
    (r":\w*(MatMul|Einsum)\w*$", "matmul"),
    (r":\w*(MaxPool|AvgPool)\w*$", "pooling"),
    (r":\w*BatchNorm\w*$", "normalization"),
    (r":\w*(ResourceApply|Assign(Add|Sub)?VariableOp)\w*$", "optimizer"),
    (r":(_Send|_Recv|_HostSend|_HostRecv|Identity|Transpose|_MklToTf|_MklNativeTranspose|Copy\w*)$",
     "data transfer"),
    (r":\w*(Relu|Add|Mul|Sub|Div|Sum|Mean|Max|Exp|Log|Softmax|Neg|Square|Rsqrt|Sqrt|Cast|Select|Equal|"
     r"Greater|Less|Fill|ZerosLike|OnesLike|Reciprocal|Xent|Tile|Reshape|Pack|Pad|Slice|Concat)\w*$",
     "elementwise"),
]

# XLA thunks, each an HLO instruction described by `hlo_descriptions` as "opcode [opcodes a fusion
# calls] shape op_name functions", the functions being the Python call stack that built it.
XLA_MOVES = r"^(copy|transpose|bitcast|copy-start|copy-done)\b|^fusion (copy|transpose)-only\b"  # layout changes


def xla_rules(modules: Iterable[tuple[str, str]] = ()) -> Rules:
    """XLA's rules, with a front end's own rules for its modules' names (found in an instruction's
    call stack) after the compute opcodes' and before pooling's, moves' and elementwise ones."""
    return [
        (r"\bconvolution\b.*(transpose\(|\(no op_name\))", "convolution backward"),
        (r"\bconvolution\b", "convolution forward"),
        (r"\bdot\b", "matmul"),
        *modules,
        (r"reduce-window|select-and-scatter|select_and_scatter|reduce_window|\bmax_pool\b", "pooling"),
        (XLA_MOVES, "data transfer"),
        (r"^(fusion|reduce|broadcast|iota|scatter|gather|select|add|subtract|multiply|divide|maximum|minimum|"
         r"compare|exponential|log|negate|rsqrt|sqrt|concatenate|pad|slice|dynamic-slice|dynamic-update-slice|"
         r"convert|reshape)\b", "elementwise"),
    ]


XLA_RULES = xla_rules()  # TensorFlow's XLA: its instructions name TensorFlow ops, not Python functions
FLAX_RULES = xla_rules([  # JAX's, under Flax NNX's modules and optimizer
    (r"\bOptimizer\.update\b", "optimizer"),
    (r"BatchNorm\.__call__", "normalization"),
])

KERAS_RULES = xla_rules([  # JAX's, under the Keras model's layers and optimizer (frameworks.keras_common)
    (r"\btorch_sgd\b", "optimizer"),
    (r"\btorch_batch_norm\b", "normalization"),
])

TF_OP = re.compile(r"^[^:]+:_?[A-Z]\w*$")  # TensorFlow names a kernel's event "op_name:OpType"


def categorise(rules: Rules, name: str) -> str:
    """The category of the first rule whose pattern is found in `name` (case-sensitive), else "other"."""
    for pattern, category in rules:
        if re.search(pattern, name):
            return category
    return "other"


def torch_category(op: str, detail: str) -> str:
    """A `torch.profiler` event, by its name."""
    return categorise(TORCH_RULES, op)


def tensorflow_category(op: str, detail: str) -> str:
    """An op kernel's event by its "op_name:OpType". Under XLA (tensorflow:xla) `detail` is the
    thunk's instruction ("name: description", see `hlo_sources`): one that came from a TensorFlow op
    takes its name and TensorFlow's rules, unless it only moves data; one XLA made, the XLA rules."""
    if detail:
        description = detail.split(": ", 1)[-1]
        if re.search(XLA_MOVES, description):
            return "data transfer"
        if not TF_OP.match(op):
            return categorise(XLA_RULES, description)
    return categorise(TF_RULES, op)


def tensorflow_device_op(stats: dict[str, str], compiled: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """A GPU kernel's (op, detail), from the stats CUPTI's collector gives it (the annotations of
    its launch): under XLA its thunk's instruction (`hlo_op`), looked up in `compiled` (see
    `hlo_sources`) as a host thunk is; else its TensorFlow op (`tf_op`, "op_name:OpType"). None for
    a kernel with neither."""
    instruction = stats.get("hlo_op", "")
    if instruction in compiled:
        description, source = compiled[instruction]
        return source or instruction, f"{instruction}: {description}"
    if TF_OP.match(stats.get("tf_op", "")):
        return stats["tf_op"], ""
    return None


def flax_category(op: str, detail: str) -> str:
    """An XLA thunk of a Flax model: its names say little, so the rules read its instruction's
    description (see `hlo_descriptions`) where there is one."""
    return categorise(FLAX_RULES, detail or op)


def keras_category(op: str, detail: str) -> str:
    """An XLA thunk of a Keras model on JAX, by its instruction's description, as for Flax."""
    return categorise(KERAS_RULES, detail or op)


# --- What the profilers write --------------------------------------------------------------------


def self_times(events: list[tuple[int, int, str]]) -> dict[int, int]:
    """Self time of each (start, duration, name) event of one thread's timeline, whose events nest:
    its duration less its direct children's. Keyed by the event's index."""
    order = sorted(range(len(events)), key=lambda i: (events[i][0], -events[i][1]))
    own = {i: events[i][1] for i in order}
    stack: list[int] = []
    for i in order:
        start = events[i][0]
        while stack and events[stack[-1]][0] + events[stack[-1]][1] <= start:
            stack.pop()
        if stack:
            own[stack[-1]] -= events[i][1]
        stack.append(i)
    return own


@dataclass(frozen=True)
class TorchEvent:
    """One of `torch.profiler.profile.events()`, as far as its device time needs it."""

    name: str
    id: int  # a host op's correlation id, which the kernels it launched link to
    on_device: bool  # a kernel, copy or memset (its device_type is not CPU)
    annotation: bool  # a user annotation (record_function); on the device, a span over other events' kernels
    linked_id: int  # on the device, the id of the host op that launched it; 0 for a host op
    duration_us: float


def torch_device_time(events: Iterable[TorchEvent]) -> list[dict]:
    """Device time by the host op that launched it: each kernel, copy and memset counted once, under
    the innermost op around its launch (as torch.profiler links them), one row per op call (`op`,
    `calls`, `self_us`); one that no op launched, under its own name. A device-side annotation spans
    other events' kernels and counts nothing. `key_averages()` cannot give this: it has a row per
    kernel and adds the kernel's time to its op's `self_device_time_total` too, and it merges a host
    annotation with its device span, which share a name."""
    events = list(events)
    launchers = {event.id: event for event in events if not event.on_device and not event.linked_id}
    rows: dict[tuple, dict] = {}
    for index, event in enumerate(events):
        if not event.on_device or event.annotation:
            continue
        launcher = launchers.get(event.linked_id)
        key, name = (("op", launcher.id), launcher.name) if launcher else (("kernel", index), event.name)
        rows.setdefault(key, {"op": name, "calls": 1, "self_us": 0.0})["self_us"] += event.duration_us
    return list(rows.values())


def xla_thunk_events(trace: dict, module: str, device: bool) -> list[dict]:
    """The thunks of the XLA module whose name ends with `module`, from a Chrome trace as the TSL
    profiler writes it (`<host>.trace.json.gz`: a process per plane, named "/host:CPU" or
    "/device:GPU:N"; a thunk's event carries its `hlo_op` and `hlo_module`): each event's
    instruction (`op`) and duration (`self_us`). On a GPU (`device`) only the device's own events
    count: the host plane also holds CUPTI's record of every launch (cuLaunchKernel), annotated with
    the same instruction, whose host time would count each kernel twice. On a CPU the thunks run on
    host threads."""
    events = trace["traceEvents"]
    planes = {event["pid"]: event["args"]["name"] for event in events
              if event.get("ph") == "M" and event.get("name") == "process_name"}
    wanted = "/device:" if device else "/host:"
    return [{"op": event["args"]["hlo_op"], "calls": 1, "self_us": float(event["dur"])} for event in events
            if event.get("ph") == "X" and planes.get(event.get("pid"), "").startswith(wanted)
            and "hlo_op" in event.get("args", {}) and event["args"].get("hlo_module", "").endswith(module)]


HLO_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(?P<name>[\w.\-]+) = (?P<shape>.+?) (?P<opcode>[a-z][a-z\-]*)\("
                             r"(?P<rest>.*)$")
HLO_SOURCE = re.compile(r'^(?P<id>\d+) \{?(?P<fields>.*?)\}?$')


def _source_tables(sections: dict[str, list[str]]) -> Callable[[int], list[str]]:
    """The function names of a `stack_frame_id`'s call stack, innermost first, from the module's
    FunctionNames, FileLocations and StackFrames tables (a frame's parent_frame_id is one above
    its index; 0 is the root)."""
    def table(name: str) -> dict[int, str]:
        return {int(m["id"]): m["fields"] for line in sections.get(name, []) if (m := HLO_SOURCE.match(line))}

    functions = {key: value.strip('"') for key, value in table("FunctionNames").items()}
    locations = {key: int(re.search(r"function_name_id=(\d+)", value)[1])
                 for key, value in table("FileLocations").items()}
    frames = {key: (int(re.search(r"file_location_id=(\d+)", value)[1]),
                    int(re.search(r"parent_frame_id=(\d+)", value)[1]) - 1)
              for key, value in table("StackFrames").items()}

    def stack(frame: int) -> list[str]:
        names = []
        while frame in frames and len(names) < 64:
            location, frame = frames[frame]
            names.append(functions.get(locations.get(location), "?"))
        return names
    return stack


def hlo_sources(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Each instruction of an optimised HLO module's entry: its description (see
    `hlo_descriptions`) and the op it came from, JAX's op_name or TensorFlow's "op_name:OpType"
    ("" where XLA made it). An instruction XLA created keeps no metadata: a fusion such as a
    scatter's index `iota` takes that of the instruction using it, and a convolution is written
    "(no op_name)": in a training step that is a gradient's, rewritten by XLA (JAX's forward
    convolutions keep theirs)."""
    computations: dict[str, list[re.Match]] = {}
    sections: dict[str, list[str]] = {}
    current, entry, section = None, None, None
    for line in hlo_text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current, section = None, sections.setdefault(line, [])
        elif line and not line[0].isspace() and line.rstrip().endswith("{"):
            current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            entry = current if line.startswith("ENTRY") else entry
            computations[current], section = [], None
        elif current and (match := HLO_INSTRUCTION.match(line)):
            computations[current].append(match)
        elif current is None and line and section is not None:
            section.append(line)
    stack = _source_tables(sections)

    def metadata(match: re.Match) -> tuple[str, list[str]]:
        found = re.search(r'(?:op_type="(\w+)" )?op_name="([^"]*)"(?: stack_frame_id=(\d+))?', match["rest"])
        if not found:
            return "", []
        op_name = f"{found[2]}:{found[1]}" if found[1] else found[2]  # TensorFlow's own "op_name:OpType"
        return op_name, stack(int(found[3])) if found[3] else []

    def called(match: re.Match) -> list[re.Match]:
        callee = re.search(r"calls=%([\w.\-]+)", match["rest"])
        return computations.get(callee[1], []) if callee else []

    known = {}  # op_name and functions of each instruction, a fusion's from inside it where it has none
    for matches in computations.values():
        for match in matches:
            known[match["name"]] = metadata(match)
    for match in computations.get(entry, []):
        if not known[match["name"]][0]:
            known[match["name"]] = next((known[m["name"]] for m in called(match) if known[m["name"]][0]), ("", []))
    users: dict[str, list[str]] = {}
    for match in computations.get(entry, []):
        for operand in re.findall(r"%([\w.\-]+)", match["rest"].split("calls=")[0].split("metadata=")[0]):
            users.setdefault(operand, []).append(match["name"])
    convolutions = {match["name"] for match in computations.get(entry, [])
                    if "convolution" in [match["opcode"], *(m["opcode"] for m in called(match))]}
    for _ in range(len(known)):  # XLA's own instructions take the source of the first user that has one
        unknown = [name for name in users if name in known and not known[name][0] and name not in convolutions]
        found = {name: next((known[user] for user in users[name] if known[user][0]), None) for name in unknown}
        if not any(found.values()):
            break
        known.update({name: source for name, source in found.items() if source})

    def describe(match: re.Match) -> str:
        opcode, inner = match["opcode"], called(match)
        kinds = sorted({m["opcode"] for m in inner} - {"parameter", "bitcast", "constant", "tuple"})
        if inner and set(kinds) <= {"copy", "transpose"}:
            kinds = [f"{kinds[0]}-only"]
        op_name, functions = known[match["name"]]
        if match["name"] in convolutions:
            op_name = op_name or "(no op_name)"
        shape = re.search(r"\w+\[[\d,]*\]", match["shape"])
        return " ".join(filter(None, [opcode, " ".join(kinds), shape and shape[0], op_name, " < ".join(functions[:6])]))

    return {match["name"]: (describe(match), known[match["name"]][0]) for match in computations.get(entry, [])}


def hlo_descriptions(hlo_text: str) -> dict[str, str]:
    """Each instruction of an optimised HLO module described for `xla_rules`: its opcode, the
    opcodes a fusion calls, its result shape, the op_name it came from and the Python functions
    that built it (innermost first); see `hlo_sources`."""
    return {name: description for name, (description, _) in hlo_sources(hlo_text).items()}
