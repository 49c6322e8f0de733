"""`--profile`: each framework's own profiler over a few steady-state training steps, taken after
a job's timed steps so no timing figure includes its cost; the trace saved in the framework's
native viewable format, and its operations' self times sorted into categories that compare
across frameworks.

A worker calls `capture` (which imports only the job's framework); the rules (`categorise`) are
plain name matching, one table per framework, so they are testable without any framework."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks.harness.results import IDENTITY, PROFILE_COLUMNS

STEPS = 5  # profiled steps: enough to average out one step's jitter, few enough to keep traces small

CATEGORIES = ("convolution forward", "convolution backward", "matmul", "pooling", "normalization", "elementwise",
              "optimizer", "data transfer", "other")
OP_COLUMNS = PROFILE_COLUMNS[len(IDENTITY):]  # self_ms: per profiled step


# --- Categories, by each framework's op names ----------------------------------------------------

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
XLA_RULES = [
    (r"\bconvolution\b.*(transpose\(|\(no op_name\))", "convolution backward"),
    (r"\bconvolution\b", "convolution forward"),
    (r"\bdot\b", "matmul"),
    (r"\bOptimizer\.update\b", "optimizer"),
    (r"BatchNorm\.__call__", "normalization"),
    (r"reduce-window|select-and-scatter|select_and_scatter|reduce_window|\bmax_pool\b", "pooling"),
    (XLA_MOVES, "data transfer"),
    (r"^(fusion|reduce|broadcast|iota|scatter|gather|select|add|subtract|multiply|divide|maximum|minimum|compare|"
     r"exponential|log|negate|rsqrt|sqrt|concatenate|pad|slice|dynamic-slice|dynamic-update-slice|convert|reshape)\b",
     "elementwise"),
]

RULES = {"pytorch": TORCH_RULES, "tensorflow": TF_RULES, "jax": XLA_RULES}


def categorise(framework: str, name: str) -> str:
    """The comparable category of one operation, by the framework's own name for it."""
    for pattern, category in RULES[framework]:
        if re.search(pattern, name):
            return category
    return "other"


def _category(framework: str, op: str, detail: str) -> str:
    """XLA's thunk names say little: its rules read the instruction's description (see
    `hlo_descriptions`). tensorflow:xla's instructions ("name: description") that came from a
    TensorFlow op take its name and TensorFlow's rules, unless they only move data."""
    if framework == "tensorflow" and detail:
        description = detail.split(": ", 1)[-1]
        if re.search(XLA_MOVES, description):
            return "data transfer"
        if not TF_OP.match(op):
            return categorise("jax", description)
    elif framework == "jax":
        return categorise("jax", detail or op)
    return categorise(framework, op)


def op_table(framework: str, ops: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Ops (`op`, `calls`, `self_us` summed over the profiled steps, `detail`) -> per-step rows with
    their category and share of all self time, the largest first."""
    ops = ops[ops["self_us"] > 0].groupby(["op", "detail"], as_index=False, sort=False)[["calls", "self_us"]].sum()
    ops["category"] = [_category(framework, op, detail) for op, detail in zip(ops["op"], ops["detail"])]
    ops["self_ms"] = ops["self_us"] / 1000 / steps
    ops["calls"] = ops["calls"] / steps
    ops["share"] = ops["self_us"] / ops["self_us"].sum()
    return ops.sort_values("self_ms", ascending=False)[OP_COLUMNS].reset_index(drop=True)


# --- Capture, one profiler per framework ---------------------------------------------------------


def _run_steps(adapter, batches) -> None:
    for batch in batches:
        adapter.train_step(*batch)
    adapter.synchronize()


INDUCTOR_GRAPH = ("kernels torch.compile generated, timed as one (TORCHINDUCTOR_CPP_ENABLE_KERNEL_PROFILE=1 "
                   "names each, at a cost to every step)")


def _pytorch(adapter, batches, folder: Path) -> pd.DataFrame:
    """torch.profiler: a Chrome trace (chrome://tracing, Perfetto) and `key_averages`' self times,
    on the device where there is one. torch.compile's own kernels run inside one "## Call
    CompiledFxGraph ##" event per graph unless inductor was told to record each."""
    from torch.profiler import ProfilerActivity, profile

    cuda = adapter.torch_device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        _run_steps(adapter, batches)
    prof.export_chrome_trace(str(folder / "trace.json"))
    events = prof.key_averages()
    return pd.DataFrame({"op": [event.key for event in events], "calls": [event.count for event in events],
                         "self_us": [event.self_device_time_total if cuda else event.self_cpu_time_total
                                     for event in events],
                         "detail": [INDUCTOR_GRAPH if "CompiledFxGraph" in event.key else "" for event in events]})


def _self_times(events: list[tuple[int, int, str]]) -> dict[int, int]:
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


TF_OP = re.compile(r"^[^:]+:_?[A-Z]\w*$")  # TensorFlow names a kernel's event "op_name:OpType"


def _tensorflow(adapter, batches, folder: Path) -> pd.DataFrame:
    """tf.profiler: an XSpace (`plugins/profile/<run>/<host>.xplane.pb`, opened by TensorBoard's
    profile plugin or xprof), whose op-kernel events carry "op_name:OpType" names."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(str(folder))
    try:
        _run_steps(adapter, batches)
    finally:
        tf.profiler.experimental.stop()
    compiled = {}  # jit_compile=True: XLA's thunks, named by the HLO instruction they run
    if adapter.variant == "xla":
        hlo = adapter._compiled_step.experimental_get_compiler_ir(*adapter.place(*batches[0]))(stage="optimized_hlo")
        (folder / "train_step.hlo.txt").write_text(hlo)
        compiled = hlo_sources(hlo)
    rows = []
    for path in folder.glob("plugins/profile/*/*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            device = "/device:GPU" in plane.name
            if not (device or plane.name == "/host:CPU"):
                continue
            for line in plane.lines:
                events = [(event.offset_ps, event.duration_ps, plane.event_metadata[event.metadata_id].name)
                          for event in line.events]
                for index, own in _self_times(events).items():
                    name = events[index][2]
                    if name in compiled:  # its TensorFlow op's "op_name:OpType" where it came from one
                        description, source = compiled[name]
                        rows.append({"op": source or name, "calls": 1, "self_us": own / 1e6,
                                     "detail": f"{name}: {description}"})
                    elif TF_OP.match(name) and (device or not line.name.startswith("python")):
                        rows.append({"op": name, "calls": 1, "self_us": own / 1e6, "detail": ""})
    return pd.DataFrame(rows, columns=["op", "calls", "self_us", "detail"])


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
    """Each instruction of an optimised HLO module described for `XLA_RULES`: its opcode, the
    opcodes a fusion calls, its result shape, the op_name it came from and the Python functions
    that built it (innermost first); see `hlo_sources`."""
    return {name: description for name, (description, _) in hlo_sources(hlo_text).items()}


def _jax(adapter, batches, folder: Path) -> pd.DataFrame:
    """jax.profiler: a TensorBoard profile (`plugins/profile/<run>/<host>.xplane.pb` and
    `.trace.json.gz`) and a Perfetto trace; each XLA thunk's event names its HLO instruction,
    looked up in the step's optimised HLO module (saved beside it as `train_step.hlo.txt`).
    On more than one thread XLA's own convolutions run asynchronously on its intra-op pool and
    their events end when they are dispatched: only a one-thread profile counts them whole."""
    import jax

    from frameworks import jax_flax

    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        _run_steps(adapter, batches)
    images, labels = adapter.place(*batches[0])
    hlo = jax_flax.train_step.lower(adapter.graphdef, adapter.state, images, labels,
                                    adapter.config.label_smoothing).compile().as_text()
    (folder / "train_step.hlo.txt").write_text(hlo)
    described = hlo_descriptions(hlo)
    rows = []
    for path in folder.glob("plugins/profile/*/*.trace.json.gz"):
        with gzip.open(path) as f:
            for event in json.load(f)["traceEvents"]:
                args = event.get("args", {})
                if event.get("ph") == "X" and args.get("hlo_module", "").endswith("train_step") and "hlo_op" in args:
                    rows.append({"op": args["hlo_op"], "calls": 1, "self_us": event["dur"],
                                 "detail": described.get(args["hlo_op"], "")})
    return pd.DataFrame(rows, columns=["op", "calls", "self_us", "detail"])


PROFILERS: dict[str, Callable] = {"pytorch": _pytorch, "tensorflow": _tensorflow, "jax": _jax}


def capture(adapter, batches: list, folder: Path) -> list[dict]:
    """Profile `len(batches)` training steps of a warmed-up adapter into `folder`; the op rows."""
    if adapter.framework not in PROFILERS:
        raise ValueError(f"no profiler for {adapter.framework} (profiles: {', '.join(PROFILERS)})")
    folder.mkdir(parents=True, exist_ok=True)
    ops = PROFILERS[adapter.framework](adapter, batches, folder)
    if ops.empty:
        raise RuntimeError(f"the {adapter.framework} profiler recorded no operation of the training step")
    return op_table(adapter.framework, ops, len(batches)).to_dict("records")
