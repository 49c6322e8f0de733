"""A pure-NumPy stand-in framework that implements the whole adapter contract (threads, version,
profiler and its op categories included) from outside `frameworks/`: registered through
BENCHMARKS_EXTRA_FRAMEWORKS (see `EXTRA_FRAMEWORKS`), it shows that a new framework needs its own
module and a registry entry, nothing in the harness. Its model is the float64 reference
(`frameworks.reference`); its profiler times the phases of each step."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

from frameworks import reference
from frameworks.base import SINGLE, Adapter, DataParallel, DeviceUnavailable, TrainConfig, TrainingState, init_params
from frameworks.profiles import categorise

VERSION = "1.0-standin"
EXTRA_FRAMEWORKS = "standin=tests.standin_framework:numpy+profiler"  # the env variable's value

# Its profiler's events ("standin::phase") and their categories, by its own rules.
RULES = [
    (r"::forward$", "convolution forward"),
    (r"::backward$", "convolution backward"),
    (r"::sgd$", "optimizer"),
]


def standin_category(op: str, detail: str) -> str:
    return categorise(RULES, op)


class StandinAdapter(Adapter):
    framework = "standin"
    threads: int | None = None

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        """NumPy's BLAS takes its threads from OMP_NUM_THREADS, which the worker's environment sets;
        the count is kept for `applied_threads`."""
        cls.threads = threads

    @classmethod
    def version(cls) -> str:
        return VERSION

    @classmethod
    def build_info(cls) -> dict:
        """Its BLAS is NumPy's."""
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"version": VERSION, "numpy": np.__version__, "blas": f"{blas['name']} {blas['version']}",
                "flags": {"threads": cls.threads}}

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        if device != "cpu" or parallel.active:
            raise DeviceUnavailable("the stand-in trains on one CPU only")
        self.state = TrainingState.fresh(init_params(model, seed=0))
        self._events: list[tuple[str, float, float]] | None = None  # (name, start, seconds) while profiled

    # --- State ----------------------------------------------------------------------------------

    def set_state(self, state: TrainingState) -> None:
        self.state = state.astype(np.float64)

    def get_state(self) -> TrainingState:
        return self.state.astype(np.float32)

    # --- Training -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, name: str):
        start = time.perf_counter()
        yield
        if self._events is not None:
            self._events.append((f"standin::{name}", start, time.perf_counter() - start))

    def train_step(self, images, labels):
        """PyTorch's SGD on the reference's loss and gradients (see `reference.train_step`)."""
        config, state = self.config, self.state
        with self._phase("forward"):
            nodes, net, out = reference.forward_graph(self.model_name, state.params, images, training=True)
            loss = reference.cross_entropy(out, labels, config.label_smoothing)
        with self._phase("backward"):
            reference.backward(loss)
        with self._phase("sgd"):
            rate = config.learning_rate_at(state.step)
            params, momentum = {**state.params, **net.updates}, {}
            for name, node in nodes.items():
                grad = node.grad + config.weight_decay * state.params[name]
                momentum[name] = config.momentum * state.momentum[name] + grad
                params[name] = state.params[name] - rate * (grad + config.momentum * momentum[name]
                                                            if config.nesterov else momentum[name])
            self.state = TrainingState(params, momentum, state.step + 1)
        return float(loss.value)

    def synchronize(self) -> None:
        pass  # NumPy has finished by the time a call returns

    def losses_to_numpy(self, losses: list) -> np.ndarray:
        return np.asarray(losses, np.float64)

    def loss_and_grads(self, images, labels):
        loss, grads = reference.loss_and_grads(self.model_name, self.state.params, images, labels,
                                               self.config.label_smoothing)
        return loss, {name: grad.astype(np.float32) for name, grad in grads.items()}

    # --- Evaluation -----------------------------------------------------------------------------

    def logits(self, images):
        return reference.logits(self.model_name, self.state.params, images).astype(np.float32)

    def evaluate(self, images, labels):
        logits = reference.logits(self.model_name, self.state.params, images)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_softmax[np.arange(len(labels)), labels].sum()), logits.argmax(1)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        return 0  # nothing is compiled

    def applied_threads(self):
        return self.threads

    # --- Profiling ------------------------------------------------------------------------------

    def profile(self, batches, folder: Path) -> list[dict]:
        """Each phase of each step timed, as a Chrome trace (`trace.json`, chrome://tracing)."""
        self._events = []
        try:
            self.run_steps(batches)
        finally:
            events, self._events = self._events, None
        trace = [{"name": name, "ph": "X", "ts": start * 1e6, "dur": seconds * 1e6, "pid": os.getpid(), "tid": 0}
                 for name, start, seconds in events]
        (folder / "trace.json").write_text(json.dumps({"traceEvents": trace}))
        return [{"op": name, "calls": 1, "self_us": seconds * 1e6, "detail": ""} for name, _, seconds in events]

    op_category = staticmethod(standin_category)


ADAPTER = StandinAdapter
