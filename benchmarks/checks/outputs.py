"""What a framework's side of a parity check computes, in a worker process: one framework variant's
outputs (`compute_outputs`), the training checks on several devices (`training_outputs`), and the
worker entry points of parity jobs. The float64 reference's side is `checks.reference_cache`."""

from __future__ import annotations

import numpy as np

from benchmarks.checks.definitions import (
    PLANS,
    PROOF,
    PrecisionView,
    _step_outputs,
    common_state,
    key,
    model_batches,
    parity_params,
    round_trip_state,
    training_config,
)
from benchmarks.checks.reference_cache import reference_outputs
from benchmarks.harness.channel import Channel
from benchmarks.harness.jobs import Job
from benchmarks.harness.training import tune
from frameworks import load_adapter
from frameworks.base import SINGLE, Adapter, DataParallel

# --- One framework's outputs ----------------------------------------------------------------------


def compute_outputs(adapter_cls: type[Adapter], model: str, device: str, variant: str,
                    precision: str = "fp32", common: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Everything the checks compare in `precision`, as a flat dict of "check|setting|step|tensor"
    -> array (workers save it as .npz). `common` holds the reference's states for the per-step
    check (computed here when not given). Weights and batches are random and non-zero. The round
    trip is checked outside fp64, whose weights are float64 by design. The untrained checks (forward,
    loss, gradients) use the first setting's adapter, and so its loss (label smoothing)."""
    common = reference_outputs(model) if common is None else common
    params = parity_params(model)
    batches = model_batches(model)
    images, labels = batches[0]
    outputs = {}
    for setting in PLANS[model].settings:
        config = training_config(model, setting, precision)
        adapter = adapter_cls(model, device, variant, config)
        if not outputs:  # the untrained checks need only one adapter
            if precision != PROOF:
                adapter.set_state(round_trip_state(model))
                exported = adapter.get_state()
                outputs.update({key("round trip", name): value for name, value in exported.params.items()})
                outputs.update({key("round trip", f"momentum {name}"): value
                                for name, value in exported.momentum.items()})
                outputs[key("round trip", "step count")] = np.int64(exported.step)
            adapter.set_params(params)
            outputs[key("forward", "logits")] = adapter.logits(images)
            loss, grads = adapter.loss_and_grads(images, labels)
            outputs[key("loss", "loss")] = np.float64(loss)
            outputs.update({key("gradients", name): value for name, value in grads.items()})
        for step, (x, y) in enumerate(batches):
            start = common_state(common, setting, step)
            adapter.set_state(start)
            loss = adapter.losses_to_numpy([adapter.train_step(x, y)])[0]
            outputs.update(_step_outputs(setting, step, start, loss, adapter.get_state()))
        adapter.set_params(params)
        losses = adapter.losses_to_numpy([adapter.train_step(x, y) for x, y in batches])
        outputs.update({key("free-running", "loss", setting, step): np.float64(loss)
                        for step, loss in enumerate(losses)})
        outputs.update({key("free-running", name, setting, len(batches)): value
                        for name, value in adapter.get_params().items()})
    return outputs


def training_outputs(adapter_cls: type[Adapter], model: str, device: str, variant: str, common: dict[str, np.ndarray],
                     parallel: DataParallel = SINGLE) -> dict[str, np.ndarray]:
    """The training checks alone (per-step from the common states, and free-running), in float32,
    on one device or on `parallel`'s replicas, where this process feeds its part of every batch."""
    outputs = {}
    for setting in PLANS[model].settings:
        adapter = adapter_cls(model, device, variant, training_config(model, setting), parallel)
        for step, (x, y) in enumerate(model_batches(model)):
            start = common_state(common, setting, step)
            adapter.set_state(start)
            loss = adapter.losses_to_numpy([adapter.train_step(parallel.local(x), parallel.local(y))])[0]
            outputs.update(_step_outputs(setting, step, start, loss, adapter.get_state()))
        adapter.set_params(parity_params(model))
        losses = adapter.losses_to_numpy([adapter.train_step(parallel.local(x), parallel.local(y))
                                          for x, y in model_batches(model)])
        outputs.update({key("free-running", "loss", setting, step): np.float64(loss)
                        for step, loss in enumerate(losses)})
        outputs.update({key("free-running", name, setting, len(losses)): value
                        for name, value in adapter.get_params().items()})
    return outputs


def compute_all(adapter_cls: type[Adapter], model: str, device: str, variant: str, precision: str,
                common: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs in `precision` and in float64, as "precision/check|...": float64 last, because
    JAX's 64-bit mode and Keras's float64 default stay on for the rest of the process."""
    outputs = {}
    for each in dict.fromkeys((precision, PROOF)):
        outputs.update({f"{each}/{name}": value
                        for name, value in compute_outputs(adapter_cls, model, device, variant, each, common).items()})
    return outputs


def run_parity(job: Job, channel: Channel) -> dict:
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.placement.threads)
    tuned = tune(adapter_cls, job)
    with np.load(job.files.reference) as arrays:
        view = PrecisionView(arrays, job.training.precision)  # the common states are the same in each
        common = {name: view[name] for name in view if name.startswith("state|")}
    outputs = compute_all(adapter_cls, job.what.model, job.placement.device, job.what.variant, job.training.precision,
                          common)
    np.savez(job.files.output, **outputs)
    return {"status": "ok", "framework_version": adapter_cls.version(), "build": adapter_cls.build_info(), **tuned}


def run_parallel_parity(job: Job, channel: Channel) -> dict:
    """The training checks on `job.placement.devices` devices, and on the leader also on one device, from
    the reference's common states (see `training_outputs`)."""
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.process_threads)
    tuned = tune(adapter_cls, job)
    with np.load(job.files.reference) as arrays:
        view = PrecisionView(arrays, job.training.precision)
        common = {name: view[name] for name in view if name.startswith("state|")}
    model, device, variant = job.what.model, job.placement.device, job.what.variant
    outputs = {f"parallel/{name}": value for name, value in
               training_outputs(adapter_cls, model, device, variant, common, job.parallel).items()}
    if job.leads:
        outputs.update({f"single/{name}": value for name, value in
                        training_outputs(adapter_cls, model, device, variant, common).items()})
        np.savez(job.files.output, **outputs)
    return {"status": "ok", "framework_version": adapter_cls.version(), **tuned}


