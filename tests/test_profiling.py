"""`--profile`: the op-name rules sort each framework's operations into the right categories, the
XLA module and trace parsers read what the frameworks write, and a profiled run leaves a trace in
each framework's own format, op rows whose shares add up, and the report's profile section."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from benchmarks import run
from benchmarks.harness import data as datasets, training
from benchmarks.harness.jobs import Data, Timing
from benchmarks.harness.profiling import CATEGORIES, op_table
from frameworks import REGISTRY, profiled
from frameworks.profiles import (
    FLAX_RULES,
    TF_RULES,
    TORCH_RULES,
    TorchEvent,
    categorise,
    hlo_descriptions,
    hlo_sources,
    self_times,
    tensorflow_category,
    tensorflow_device_op,
    torch_category,
    torch_device_time,
    xla_thunk_events,
)
from tests.conftest import FRAMEWORKS, ROOT, import_error, make_job, require

RULES = {"pytorch": TORCH_RULES, "tensorflow": TF_RULES, "jax": FLAX_RULES}

# (framework, the framework's own name for an operation, its category)
NAMES = [
    ("pytorch", "aten::mkldnn_convolution", "convolution forward"),
    ("pytorch", "aten::convolution", "convolution forward"),
    ("pytorch", "aten::convolution_backward", "convolution backward"),
    ("pytorch", "autograd::engine::evaluate_function: ConvolutionBackward0", "convolution backward"),
    ("pytorch", "aten::addmm", "matmul"),
    ("pytorch", "aten::mm", "matmul"),
    ("pytorch", "aten::max_pool2d_with_indices", "pooling"),
    ("pytorch", "aten::max_pool2d_with_indices_backward", "pooling"),
    ("pytorch", "aten::native_batch_norm_backward", "normalization"),
    ("pytorch", "Optimizer.step#SGD.step", "optimizer"),
    ("pytorch", "aten::_foreach_add_", "optimizer"),
    ("pytorch", "aten::copy_", "data transfer"),
    ("pytorch", "aten::clamp_min", "elementwise"),
    ("pytorch", "aten::threshold_backward", "elementwise"),
    ("pytorch", "cpp_fused_max_pool2d_with_indices_relu_0", "pooling"),
    ("pytorch", "cpp_fused__log_softmax_nll_loss_forward_1", "elementwise"),
    ("pytorch", "## Call CompiledFxGraph f4todjg7xvmqppwaur7qkf7dyom5 ##", "other"),
    ("tensorflow", "le_net_1/Relu:_MklNativeFusedConv2D", "convolution forward"),
    ("tensorflow", "res_net9/prep/conv/convolution:Conv2D", "convolution forward"),
    ("tensorflow", "gradient_tape/le_net_1/conv2d_1/convolution/Conv2DBackpropFilter:"
                   "_MklNativeConv2DBackpropFilterWithBias", "convolution backward"),
    ("tensorflow", "gradient_tape/le_net_1/conv2d_1_2/convolution/Conv2DBackpropInput:Conv2DBackpropInput",
     "convolution backward"),
    ("tensorflow", "le_net_1/Relu_2:_MklNativeFusedMatMul", "matmul"),
    ("tensorflow", "gradient_tape/le_net_1/dense_1/MatMul/MatMul_1:MatMul", "matmul"),
    ("tensorflow", "gradient_tape/le_net_1/MaxPool2d/MaxPoolGrad:_MklNativeMaxPoolGrad", "pooling"),
    ("tensorflow", "res_net9/prep/bn/FusedBatchNormV3:FusedBatchNormV3", "normalization"),
    ("tensorflow", "torch_sgd/AssignSubVariableOp_4:AssignSubVariableOp", "optimizer"),
    ("tensorflow", "torch_sgd/Mul_3:Mul", "optimizer"),
    ("tensorflow", "SGD/ResourceApplyKerasMomentum:ResourceApplyKerasMomentum", "optimizer"),
    ("tensorflow", "gradient_tape/le_net_1/ReluGrad_3:ReluGrad", "elementwise"),
    ("tensorflow", "gradient_tape/le_net_1/conv2d_1/BiasAdd/BiasAddGrad:BiasAddGrad", "elementwise"),
    ("tensorflow", "transpose:Transpose", "data transfer"),
    ("tensorflow", "while/body:While", "other"),
    ("jax", "convolution f32[128,28,28,6] jit(train_step)/jvp()/conv_general_dilated Conv.__call__ < LeNet.__call__",
     "convolution forward"),
    ("jax", "convolution f32[128,14,14,6] jit(train_step)/transpose(jvp())/conv_general_dilated Conv.__call__",
     "convolution backward"),
    ("jax", "fusion convolution f32[3,5,5,6] (no op_name)", "convolution backward"),
    ("jax", "fusion dot f32[128,400] jit(train_step)/transpose(jvp())/dot_general Linear.__call__", "matmul"),
    ("jax", "fusion reduce-window f32[128,14,14,6] jit(train_step)/jvp()/reduce_window_max pool", "pooling"),
    ("jax", "fusion scatter f32[128,28,28,6] jit(train_step)/transpose(jvp())/select_and_scatter pool", "pooling"),
    ("jax", "fusion multiply subtract f32[512,10] jit(train_step)/mul apply_updates < Optimizer.update", "optimizer"),
    ("jax", "fusion multiply reduce f32[64] jit(train_step)/jvp()/mul TorchBatchNorm.__call__ < ConvBN.__call__",
     "normalization"),
    ("jax", "fusion copy-only f32[3,32,32,128]", "data transfer"),
    ("jax", "fusion add broadcast maximum f32[128,28,28,6] jit(train_step)/jvp()/jit(relu)/max", "elementwise"),
    ("jax", "custom-call f32[8]", "other"),
]


@pytest.mark.parametrize("framework, name, category", NAMES,
                         ids=[f"{framework} {name[:60]} is {category}" for framework, name, category in NAMES])
def test_operation_names_map_to_their_category(framework, name, category):
    assert categorise(RULES[framework], name) == category


@pytest.mark.parametrize("framework", RULES, ids=str)
def test_every_rule_names_a_comparable_category(framework):
    assert {category for _, category in RULES[framework]} <= set(CATEGORIES)


HLO = '''HloModule jit_train_step, is_scheduled=true

FileNames
1 "/x/frameworks/jax_flax.py"

FunctionNames
1 "loss_fn"
2 "Conv.__call__"
3 "Optimizer.update"

FileLocations
1 {file_name_id=1 function_name_id=1 line=1 end_line=1 column=1 end_column=2}
2 {file_name_id=1 function_name_id=2 line=2 end_line=2 column=1 end_column=2}
3 {file_name_id=1 function_name_id=3 line=3 end_line=3 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=2}
3 {file_location_id=3 parent_frame_id=1}

%fused_computation (param_0: f32[3,32,32,8], param_1: f32[28,28,8,6]) -> f32[3,5,5,6] {
  %param_0 = f32[3,32,32,8]{3,2,1,0} parameter(0)
  %param_1 = f32[28,28,8,6]{3,2,1,0} parameter(1)
  ROOT %convolution.4 = f32[3,5,5,6]{3,2,1,0} convolution(%param_0, %param_1), window={size=28x28}, dim_labels=b01f_01io->b01f
}

%wrapped_iota_computation () -> s32[8,28,28,6] {
  ROOT %iota.1 = s32[8,28,28,6]{3,2,1,0} iota(), iota_dimension=0
}

ENTRY %main.1 (images: f32[8,32,32,3], kernel: f32[5,5,3,6]) -> f32[5,5,3,6] {
  %images = f32[8,32,32,3]{3,2,1,0} parameter(0)
  %kernel = f32[5,5,3,6]{3,2,1,0} parameter(1)
  %conv_general_dilated.5 = f32[8,28,28,6]{3,2,1,0} convolution(%images, %kernel), window={size=5x5}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(train_step)/jvp()/conv_general_dilated" stack_frame_id=2}
  %wrapped_iota = s32[8,28,28,6]{3,2,1,0} fusion(), kind=kLoop, calls=%wrapped_iota_computation
  %wrapped_scatter = f32[8,28,28,6]{3,2,1,0} scatter(%conv_general_dilated.5, %wrapped_iota), metadata={op_name="jit(train_step)/transpose(jvp())/select_and_scatter" stack_frame_id=1}
  %ynn_fusion = f32[3,5,5,6]{3,2,1,0} fusion(%images, %wrapped_scatter), kind=kCustom, calls=%fused_computation
  ROOT %update = f32[5,5,3,6]{3,2,1,0} subtract(%kernel, %ynn_fusion), metadata={op_name="jit(train_step)/sub" stack_frame_id=3}
}
'''  # noqa: E501 (XLA's lines)


def test_hlo_instructions_are_described_by_opcode_source_and_call_stack():
    described = hlo_descriptions(HLO)
    expected = {
        "conv_general_dilated.5": ("convolution f32[8,28,28,6] jit(train_step)/jvp()/conv_general_dilated "
                                   "Conv.__call__ < loss_fn", "convolution forward"),
        # XLA's own instructions: a gradient convolution without op_name, an index iota described by its user
        "ynn_fusion": ("fusion convolution f32[3,5,5,6] (no op_name)", "convolution backward"),
        "wrapped_iota": ("fusion iota s32[8,28,28,6] jit(train_step)/transpose(jvp())/select_and_scatter loss_fn",
                         "pooling"),
        "update": ("subtract f32[5,5,3,6] jit(train_step)/sub Optimizer.update", "optimizer"),
    }
    for name, (description, category) in expected.items():
        assert described[name] == description
        assert categorise(FLAX_RULES, described[name]) == category, name


TF_HLO = '''HloModule a_inference__step_563__.26, is_scheduled=true

%fused_computation.36 (param_0.1: f32[8,32,32,3]) -> f32[3,32,32,8] {
  %param_0.1 = f32[8,32,32,3]{3,2,1,0} parameter(0)
  ROOT %transpose.1 = f32[3,32,32,8]{3,2,1,0} transpose(%param_0.1), dimensions={3,1,2,0}
}

ENTRY %a_inference__step_563__.26 (arg0.1: f32[8,32,32,3], arg2.1: f32[5,5,3,6]) -> f32[5,5,3,6] {
  %arg0.1 = f32[8,32,32,3]{3,2,1,0} parameter(0)
  %arg2.1 = f32[5,5,3,6]{3,2,1,0} parameter(1)
  %transpose_copy_fusion.4 = f32[3,32,32,8]{3,2,1,0} fusion(%arg0.1), kind=kLoop, calls=%fused_computation.36
  %convolution.2 = f32[8,28,28,6]{3,2,1,0} convolution(%arg0.1, %arg2.1), window={size=5x5}, dim_labels=b01f_01io->b01f, metadata={op_type="Conv2D" op_name="le_net_1/conv2d_1/convolution" source_file="ops.py" source_line=122}
  %convolution.1 = f32[3,5,5,6]{3,2,1,0} convolution(%transpose_copy_fusion.4, %convolution.2), window={size=28x28}, dim_labels=f01b_i01o->01bf
  ROOT %Mul_10 = f32[5,5,3,6]{3,2,1,0} multiply(%arg2.1, %convolution.1), metadata={op_type="Mul" op_name="torch_sgd/Mul_10"}
}
'''  # noqa: E501 (XLA's lines)


def test_tensorflow_xla_instructions_take_their_tensorflow_op_or_xla_rules():
    """tensorflow:xla's thunks are HLO instructions: one that came from a TensorFlow op is named
    "op_name:OpType" and sorted by TensorFlow's rules, one XLA made by the XLA rules."""
    sources = hlo_sources(TF_HLO)
    assert sources["convolution.2"] == ("convolution f32[8,28,28,6] le_net_1/conv2d_1/convolution:Conv2D",
                                        "le_net_1/conv2d_1/convolution:Conv2D")
    assert sources["convolution.1"] == ("convolution f32[3,5,5,6] (no op_name)", "")
    rows = [{"op": source or name, "calls": 1, "self_us": 10.0, "detail": f"{name}: {description}"}
            for name, (description, source) in sources.items() if name not in ("arg0.1", "arg2.1")]
    rows.append({"op": "le_net_1/conv2d_1/convolution:Conv2D", "calls": 1, "self_us": 10.0,  # a layout copy XLA
                 "detail": "copy.22: copy f32[5,5,6,3] le_net_1/conv2d_1/convolution:Conv2D"})  # named by its user
    rows.append({"op": "le_net/conv2d/convolution:_MklNativeConv2D", "calls": 1, "self_us": 10.0, "detail": ""})
    table = op_table(tensorflow_category, pd.DataFrame(rows), steps=1).set_index("detail")["category"]
    assert table.to_dict() == {
        "convolution.2: convolution f32[8,28,28,6] le_net_1/conv2d_1/convolution:Conv2D": "convolution forward",
        "convolution.1: convolution f32[3,5,5,6] (no op_name)": "convolution backward",
        "transpose_copy_fusion.4: fusion transpose-only f32[3,32,32,8]": "data transfer",
        "Mul_10: multiply f32[5,5,3,6] torch_sgd/Mul_10:Mul": "optimizer",
        "copy.22: copy f32[5,5,6,3] le_net_1/conv2d_1/convolution:Conv2D": "data transfer",
        "": "convolution forward",  # not compiled: the oneDNN kernel's own event
    }


def test_self_time_is_duration_less_nested_events():
    # an executor event holding two op events, then a third op after it, on one thread's timeline
    events = [(0, 100, "ExecutorState::Process"), (10, 30, "a:Conv2D"), (50, 20, "b:Relu"), (120, 5, "c:Mul")]
    assert self_times(events) == {0: 50, 1: 30, 2: 20, 3: 5}


def test_torch_gpu_time_counts_each_kernel_once_under_the_op_that_launched_it():
    """torch.profiler's events on a GPU, as `events()` gives them: host ops (with their correlation
    ids), the kernels and copies each launched (linked to it), a record_function's host event and
    its device-side span over the kernels inside it, and a kernel no op launched. key_averages'
    `self_device_time_total` would count every kernel twice (its own row and its op's), the
    kernel rows in "other", and the span once more."""
    host = [TorchEvent("aten::conv2d", 9, False, False, 0, 80.0),  # launches nothing itself
            TorchEvent("aten::convolution", 10, False, False, 0, 40.0),
            TorchEvent("aten::convolution", 14, False, False, 0, 40.0),
            TorchEvent("aten::convolution_backward", 11, False, False, 0, 60.0),
            TorchEvent("aten::copy_", 12, False, False, 0, 15.0),
            TorchEvent("## Call CompiledFxGraph abc ##", 13, False, True, 0, 30.0),
            TorchEvent("cudaLaunchKernel", 501, False, False, 10, 5.0)]  # the runtime call: host time only
    device = [TorchEvent("sm90_xmma_fprop_implicit_gemm_f32f32", 501, True, False, 10, 300.0),
              TorchEvent("void cudnn::ops::nchwToNhwcKernel<float>", 502, True, False, 10, 50.0),
              TorchEvent("sm90_xmma_fprop_implicit_gemm_f32f32", 503, True, False, 14, 310.0),
              TorchEvent("sm90_xmma_dgrad_implicit_gemm_f32f32", 504, True, False, 11, 500.0),
              TorchEvent("Memcpy HtoD (Pinned -> Device)", 505, True, False, 12, 20.0),
              TorchEvent("## Call CompiledFxGraph abc ##", 506, True, True, 13, 1000.0),  # a span, not work
              TorchEvent("triton_poi_fused_relu_0", 507, True, False, 13, 200.0),
              TorchEvent("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 508, True, False, 99, 40.0)]
    rows = torch_device_time(host + device)
    kernels = sum(event.duration_us for event in device if not event.annotation)
    assert sum(row["self_us"] for row in rows) == kernels, "each kernel, copy and memset counted once"
    assert sorted((row["op"], row["self_us"]) for row in rows) == [
        ("## Call CompiledFxGraph abc ##", 200.0), ("aten::convolution", 310.0), ("aten::convolution", 350.0),
        ("aten::convolution_backward", 500.0), ("aten::copy_", 20.0), ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 40.0)]
    ops = pd.DataFrame([{**row, "detail": ""} for row in rows])
    table = op_table(torch_category, ops, steps=1).groupby("category")[["self_ms", "calls"]].sum()
    assert table.loc["convolution forward", "self_ms"] == pytest.approx(0.660)
    assert table.loc["convolution forward", "calls"] == 2, "op calls, not kernels"
    assert table.loc["convolution backward", "self_ms"] == pytest.approx(0.500)
    assert table.loc["data transfer", "self_ms"] == pytest.approx(0.020)
    assert table.loc["other", "self_ms"] == pytest.approx(0.240)


def test_torch_profiler_events_are_read_as_torch_builds_them():
    """torch's own `FunctionEvent`s, as its profiler builds them on a GPU (a host op, the kernel
    linked to it, appended to it as torch links them, and a device-side annotation): the sum
    key_averages takes of `self_device_time_total` counts the kernel twice and the span once more;
    the adapter's reading counts the kernel once, under its op."""
    require("pytorch")
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    from frameworks.pytorch import profiled_events

    op = FunctionEvent(10, "aten::convolution", thread=1, start_us=0, end_us=40, use_device="cuda")
    op.append_kernel("sm90_xmma_fprop_implicit_gemm_f32f32", 0, 300)
    kernel = FunctionEvent(501, "sm90_xmma_fprop_implicit_gemm_f32f32", thread=7, start_us=50, end_us=350,
                           use_device="cuda", device_type=DeviceType.CUDA, linked_correlation_id=10)
    span = FunctionEvent(502, "## Call CompiledFxGraph abc ##", thread=7, start_us=45, end_us=360, use_device="cuda",
                         device_type=DeviceType.CUDA, is_user_annotation=True, linked_correlation_id=10)
    events = [op, kernel, span]
    assert sum(event.self_device_time_total for event in events) == 300 + 300 + 315
    assert torch_device_time(profiled_events(events)) == [{"op": "aten::convolution", "calls": 1, "self_us": 300.0}]


def trace_json(planes: dict[int, str], events: list[tuple[int, str, float, dict]]) -> dict:
    """A trace as the TSL profiler writes `<host>.trace.json.gz`: a process per plane, then
    (pid, name, dur, args) events."""
    return {"traceEvents": [*({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}}
                              for pid, name in planes.items()),
                            *({"ph": "X", "pid": pid, "tid": 1, "ts": 0, "dur": dur, "name": name, "args": args}
                              for pid, name, dur, args in events), {}]}


def test_xla_gpu_thunks_are_the_device_kernels_not_their_launches():
    """On a GPU each kernel shows twice with its instruction's `hlo_op`: CUPTI's record of the
    launch on the host plane and the kernel on the device's; and another module's kernels share the
    trace. Only the step's device kernels count; on a CPU the thunks are the host's events."""
    step = {"hlo_module": "jit_train_step", "program_id": "7"}
    gpu = trace_json({1: "/host:CPU", 2: "/device:GPU:0"}, [
        (1, "jit_train_step:XLA GPU module", 900.0, {}),
        (1, "cuLaunchKernel", 6.0, {**step, "hlo_op": "fusion.1"}),
        (1, "cuLaunchKernel", 5.0, {**step, "hlo_op": "convolution.2"}),
        (2, "loop_multiply_fusion", 30.0, {**step, "hlo_op": "fusion.1", "correlation_id": "11"}),
        (2, "sm90_xmma_fprop_implicit_gemm", 120.0, {**step, "hlo_op": "convolution.2", "correlation_id": "12"}),
        (2, "input_reduce_fusion", 8.0, {"hlo_module": "jit_evaluate", "hlo_op": "fusion.1"})])
    assert xla_thunk_events(gpu, "train_step", device=True) == [
        {"op": "fusion.1", "calls": 1, "self_us": 30.0}, {"op": "convolution.2", "calls": 1, "self_us": 120.0}]
    cpu = trace_json({1: "/host:CPU"}, [(1, "fusion.1", 30.0, {**step, "hlo_op": "fusion.1"}),
                                        (1, "ThunkExecutor::Execute", 50.0, {})])
    assert xla_thunk_events(cpu, "train_step", device=False) == [{"op": "fusion.1", "calls": 1, "self_us": 30.0}]


def test_tensorflow_gpu_kernels_take_the_op_or_instruction_their_launch_was_annotated_with():
    """A GPU kernel's name is cuDNN's or XLA's, not the op's: it is counted under its annotation,
    the TensorFlow op (`tf_op`), or under XLA the thunk's instruction looked up in the module."""
    compiled = {"fusion.3": ("fusion add multiply f32[16,10] res_net9/add:AddV2", "res_net9/add:AddV2"),
                "convolution.1": ("convolution f32[3,5,5,6] (no op_name)", "")}
    conv = {"tf_op": "le_net_1/conv2d_1/convolution:Conv2D", "correlation_id": "4"}
    assert tensorflow_device_op(conv, {}) == ("le_net_1/conv2d_1/convolution:Conv2D", "")
    xla = {"tf_op": "StatefulPartitionedCall:StatefulPartitionedCall", "hlo_op": "fusion.3", "hlo_module": "a"}
    assert tensorflow_device_op(xla, compiled) == ("res_net9/add:AddV2", "fusion.3: fusion add multiply f32[16,10] "
                                                                          "res_net9/add:AddV2")
    assert tensorflow_device_op({"hlo_op": "convolution.1"}, compiled) == (
        "convolution.1", "convolution.1: convolution f32[3,5,5,6] (no op_name)")
    assert tensorflow_device_op({"correlation_id": "9"}, compiled) is None, "a kernel no op launched"


# --- A profiled run, end to end -----------------------------------------------------------------

# The trace file each framework's registry entry tells the report's readers to open: the first it names.
TRACES = {name: entry.trace_viewer.split("`")[1] for name, entry in REGISTRY.items() if entry.profiler}
STEPS, WINDOW = 4, 2


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """One short profiled run of every installed framework's default variant, and tensorflow:xla
    (XLA thunks under TensorFlow's profiler), LeNet at batch 16."""
    installed = [name for name in FRAMEWORKS if import_error(name) is None]
    if not installed:
        pytest.skip("no framework is installed")
    out = tmp_path_factory.mktemp("results")
    xla = ["--variant", "tensorflow:function,tensorflow:xla"] if "tensorflow" in installed else []
    command = [sys.executable, "-m", "benchmarks.run", "--framework", ",".join(installed), *xla, "--model", "lenet",
               "--batch-size", "16", "--steps", str(STEPS), "--warmup", "1", "--window", str(WINDOW), "--data",
               "synthetic", "--train-size", "256", "--test-size", "64", "--no-parity", "--profile", "--out", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.slow
def test_profiled_run_writes_the_framework_trace_and_op_rows(profiled_run, framework):
    job_id = f"lenet-{framework}-{REGISTRY[framework].default_variant}-tuned-bs16-r1"
    traces = list((profiled_run / "profiles" / job_id).glob(TRACES[framework]))
    assert traces and all(trace.stat().st_size > 0 for trace in traces), f"no {TRACES[framework]} for {job_id}"
    ops = pd.read_csv(profiled_run / "profile.csv")
    ops = ops[ops["job_id"] == job_id]
    assert len(ops) > 0
    assert ops["share"].sum() == pytest.approx(1.0, abs=1e-6)
    assert set(ops["category"]) <= set(CATEGORIES)
    assert {"convolution forward", "convolution backward"} <= set(ops["category"]), "LeNet's convolutions"
    assert (ops["self_ms"] > 0).all()
    steps = pd.read_csv(profiled_run / "steps.csv")
    assert (steps["job_id"] == job_id).sum() == STEPS // WINDOW, "profiled steps must stay out of the timed windows"


@pytest.mark.slow
def test_tensorflow_xla_is_profiled_by_its_hlo_instructions(profiled_run):
    require("tensorflow")
    job_id = "lenet-tensorflow-xla-tuned-bs16-r1"
    assert "ENTRY" in (profiled_run / "profiles" / job_id / "train_step.hlo.txt").read_text()
    ops = pd.read_csv(profiled_run / "profile.csv").query("job_id == @job_id")
    assert {"convolution forward", "convolution backward", "optimizer"} <= set(ops["category"])
    assert ops["op"].str.endswith(":Conv2D").any(), "a forward convolution named by its TensorFlow op"


@pytest.mark.slow
def test_report_of_a_profiled_run_shows_where_the_time_goes(profiled_run):
    report = (profiled_run / "report.md").read_text()
    assert "## Where the time goes (profile)" in report
    assert "convolution backward" in report


def test_a_failing_profiler_costs_the_job_its_profile_not_its_timings():
    """The worker reports the error in its profile message and goes on to send its results."""

    class Unprofiled:
        framework = "faulty"

        def place(self, images, labels):
            return images, labels

        def wait(self, placed):
            pass

    class Messages(list):
        def send(self, kind, **fields):
            self.append({"type": kind, **fields})

    job = make_job("faulty", "ok", 8, timing=Timing(steps=2, warmup_steps=0, window=1, profile=True),
                   data=Data(train_size=64, test_size=16))
    channel = Messages()
    training.profile(Unprofiled(), datasets.synthetic(64, 16), job, channel)
    (message,) = channel
    shutil.rmtree(message["folder"])  # the parent would have moved it into the run folder
    assert message["type"] == "profile" and message["rows"] == []
    assert message["error"] == f"ValueError: no profiler for faulty (profiles: {', '.join(profiled())})"


# --- What --profile cannot serve ----------------------------------------------------------------

def error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if "error" in line] == [lines[-1]]  # one line, no traceback
    return lines[-1]


def test_help_documents_profile(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    assert "--profile" in capsys.readouterr().out


def test_profile_of_a_resumed_run_exits_2(capsys, tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    line = error_line(capsys, ["--resume", str(tmp_path), "--profile"])
    assert "argument --profile: a resumed run follows its plan" in line


def test_profile_of_a_framework_without_profiler_exits_2(capsys, faulty, tmp_path):
    line = error_line(capsys, ["--framework", "faulty", "--profile", "--data", "synthetic", "--out", str(tmp_path)])
    assert f"argument --profile: no profiler for faulty (profiles: {', '.join(profiled())})" in line
    assert not any(tmp_path.iterdir()), "nothing was started"
