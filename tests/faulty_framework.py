"""A pure-NumPy stand-in framework whose variant names the fault it injects into a worker: the
test suite registers it through BENCHMARKS_EXTRA_FRAMEWORKS (see `EXTRA_FRAMEWORKS`) to provoke
crashes, hangs, out-of-memory deaths and diverging losses without importing a real framework.

Variants: ok (a decreasing loss), raise (RuntimeError), exit (os._exit(7)), kill (SIGKILL, which
is how the kernel's OOM killer ends a process), oom (a MemoryError from a huge allocation), nan
and inf (a non-finite loss from `DIVERGE_STEP` on), hang (sleeps far past any test's
--job-timeout) and slow (`SLOW_STEP_S` per step, for interrupting a run mid-job). The faults
strike in `train_step`, never in the constructor, so the runner's device probe passes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from frameworks.base import SINGLE, Adapter, DataParallel, DeviceUnavailable, Params, TrainConfig, TrainingState

VARIANTS = ("ok", "raise", "exit", "kill", "oom", "nan", "inf", "hang", "slow")
EXTRA_FRAMEWORKS = f"faulty=tests.faulty_framework:{','.join(VARIANTS)}"  # the env variable's value

FAULT_STEP = 3  # raise, exit, kill and oom strike at this 0-based training step
DIVERGE_STEP = 7  # nan and inf losses from this step on
EXIT_STATUS = 7
# Square brackets: a worker's error text must reach the console and report verbatim, never be
# read as console markup (where "[/1]" is a closing tag that does not match).
RAISE_MESSAGE = f"injected failure at step {FAULT_STEP}: index [/1] out of range"
SLOW_STEP_S = 0.05
HANG_S = 600.0


class FaultyAdapter(Adapter):
    framework = "faulty"

    @classmethod
    def version(cls) -> str:
        return ""  # no framework behind it

    @classmethod
    def build_info(cls) -> dict:
        return {}  # no framework behind it

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        if device == "cuda":
            raise DeviceUnavailable("faulty sees no CUDA device (it never does)")
        self.state = TrainingState({}, {}, 0)

    def set_state(self, state: TrainingState) -> None:
        self.state = state.astype(np.float32)

    def get_state(self) -> TrainingState:
        return self.state.astype(np.float32)

    @property
    def steps(self) -> int:
        return self.state.step

    def _inject(self) -> None:
        step, variant = self.steps, self.variant
        if variant == "slow":
            time.sleep(SLOW_STEP_S)
        elif variant == "hang":
            time.sleep(HANG_S)
        elif step == FAULT_STEP and variant == "raise":
            raise RuntimeError(RAISE_MESSAGE)
        elif step == FAULT_STEP and variant == "exit":
            os._exit(EXIT_STATUS)
        elif step == FAULT_STEP and variant == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif step == FAULT_STEP and variant == "oom":
            np.ones(2**48)  # 2 PiB: more than any machine's memory and address space

    def _loss(self, step: int) -> float:
        if step >= DIVERGE_STEP and self.variant in ("nan", "inf"):
            return float(self.variant)
        return 2.3 * 0.98**step

    def train_step(self, images: np.ndarray, labels: np.ndarray):
        self._inject()
        loss = self._loss(self.steps)
        self.state = TrainingState(self.state.params, self.state.momentum, self.steps + 1)
        return loss

    def synchronize(self) -> None:
        pass

    def losses_to_numpy(self, losses: list) -> np.ndarray:
        return np.asarray(losses, np.float32)

    def loss_and_grads(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
        return self._loss(self.steps), {name: np.zeros_like(value) for name, value in self.state.params.items()}

    def logits(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 10), np.float32)

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        return self._loss(self.steps) * len(labels), np.zeros(len(labels), np.int64)  # class 0 for every image

    def compile_count(self) -> int:
        return 1


ADAPTER = FaultyAdapter
