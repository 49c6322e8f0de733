"""The worker's side of a measurement: the job's batches from the shared NumPy pipeline (`Feed`)
or from the framework's own (`NativeFeed`), the timed training loop (`Trainer`), time to accuracy,
and each kind of job that trains or times something (benchmark, overhead, probe, the machine's
peak). It runs inside a worker process (`benchmarks.harness.worker`), which imports exactly one
framework through the registry."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import psutil

from benchmarks.harness import data as datasets
from benchmarks.harness.channel import Channel
from benchmarks.harness.contention import BUSY_SHARE, BUSY_THRESHOLD, Contention, CoreMonitor, children_cpu_s
from benchmarks.harness.jobs import Job
from benchmarks.harness.rows import Evaluation, Window, merged
from benchmarks.harness.stats import StepTimes, step_time_summary
from frameworks import load_adapter, profiled, tuning
from frameworks.base import Adapter, NativeInput, PipelineUnavailable, init_params


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step


def peak_rss_mb() -> float:
    """This process's own peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    across fork and exec, so a worker would report its parent's peak whenever it was larger."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def tune(adapter_cls: type[Adapter], job: Job) -> dict[str, str]:
    """Apply the job's tuning profile to the framework before any model is built (its environment
    entries are set already, by the parent), then record what this process sees of every setting
    of the tuned profile for the job: in its environment and in the framework's own state, so that
    a stock row shows none of them and a tuned row each one, or why not (`tuning.summary_fields`)."""
    settings = tuning.settings_for(job.what.framework, job.placement.device, job.training.precision, job.what.variant)
    refused = {**json.loads(os.environ.get(tuning.REFUSED, "{}")),  # by the parent, before the import
               **(adapter_cls.apply_tuning(settings) if job.what.tuning == "tuned" else {})}
    return tuning.summary_fields(job.what.tuning, tuning.observe(settings, os.environ,
                                                                 adapter_cls.tuning_state(settings), refused))


def load_dataset(job: Job) -> datasets.Dataset:
    if job.data.name == "cifar10":
        dataset = datasets.load_cifar10(Path(job.data.folder), keep_stored=job.data.input == "native")
    else:
        dataset = datasets.synthetic()
    return dataset.subset(job.data.train_size, job.data.test_size)


# --- Training and timing ------------------------------------------------------------------------


@dataclass(frozen=True)
class InputCost:
    """A summary row's account of its input: the suite's pipeline's augmentation time and batch
    digest, or a native pipeline's workers, stall and CPU time (None where the path has none)."""

    augment_s: float | None = None
    data_digest: str | None = None
    input_workers: str | None = None
    input_stall_s: float | None = None
    input_stall_share: float | None = None
    input_cpu_s: float | None = None
    input_cpu_how: str | None = None


class Feed:
    """The batches of one job, from the shared NumPy pipeline. Every batch handed out is hashed,
    so equal digests across frameworks prove equal bytes for the whole run, and the augmentation
    is timed apart. Both happen as a batch is drawn, and `Trainer.run` draws a window's batches
    before its clock starts, so neither falls into a timed window. Over several devices the
    pipeline draws the global batch, hashes it, and hands this process its part: N devices at
    batch b consume (and digest) exactly the bytes one device does at batch N * b."""

    def __init__(self, dataset: datasets.Dataset, job: Job):
        self.dataset, self.job = dataset, job
        self.digest = hashlib.sha256()
        self.batches = 0
        self.augmenting = datasets.Stopwatch()

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        job, parallel = self.job, self.job.parallel
        for images, labels in datasets.train_batches(self.dataset, job.global_batch, job.seed, epoch, job.data.augment,
                                                     self.augmenting):
            datasets.batch_digest(images, labels, self.digest)
            self.batches += 1
            yield parallel.local(images), parallel.local(labels)

    def stream(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Epoch after epoch without end, so a large batch still fills whole windows."""
        return itertools.chain.from_iterable(self.epoch(epoch) for epoch in itertools.count())

    def summary(self, fed_s: float, compile_threads: set[int]) -> InputCost:
        return InputCost(augment_s=self.augmenting.seconds,
                         data_digest=self.digest.hexdigest()[:16] if self.batches else None)


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each of this process's threads, by thread id."""
    return {thread.id: thread.user_time + thread.system_time for thread in psutil.Process().threads()}


INPUT_CPU_HOW = ("worker processes (psutil and os.times) + threads started with the pipeline, less those the "
                 "compile step started (psutil) + the training thread's own time inside next()")


class NativeFeed:
    """The batches of one job from its framework's own input pipeline (`Adapter.native_input`),
    built from the arrays the suite's verified loader read and run inside the clock, as its users
    run it. What it costs is measured as it runs: the seconds the training loop waited in `next()`
    for a batch (the stall), and the CPU time of the pipeline's workers, wherever the library puts
    them (`INPUT_CPU_HOW`). The bytes differ from the suite's, so nothing is hashed."""

    def __init__(self, adapter: Adapter, dataset: datasets.Dataset, job: Job, epochs: int):
        if job.data.augment not in datasets.NATIVE_AUGMENTATIONS:
            raise PipelineUnavailable(f"the native pipelines augment by {' or '.join(datasets.NATIVE_AUGMENTATIONS)}, "
                                      f"not {job.data.augment}")
        images, scale, mean, std = dataset.pixels()
        source = NativeInput(images, dataset.train_labels, tuple(map(float, mean)), tuple(map(float, std)), scale,
                             job.data.augment == "crop-flip", datasets.PAD, job.global_batch, epochs, job.seed,
                             job.data.input_workers)
        self.per_epoch, self.epochs = source.steps_per_epoch, epochs
        self.threads_before, self.children_before = set(thread_cpu_s()), children_cpu_s()
        self.pipeline = adapter.native_input(source)
        self.iterator = iter(self.pipeline.batches)
        self.stall_s = self.next_cpu_s = 0.0
        self.batches = 0

    def _draw(self, count: int) -> Iterator[tuple]:
        for _ in range(count):
            start, cpu = time.perf_counter(), time.thread_time()
            batch = next(self.iterator)
            self.stall_s += time.perf_counter() - start
            self.next_cpu_s += time.thread_time() - cpu
            self.batches += 1
            yield batch

    def epoch(self, epoch: int) -> Iterator[tuple]:
        return self._draw(self.per_epoch)

    def stream(self) -> Iterator[tuple]:
        return self._draw(self.per_epoch * self.epochs)

    def skip_to_epoch_end(self) -> None:
        """Drop what is left of a partly drawn epoch (after a timing-only run's steps), untimed, so
        that the epochs which follow start where the pipeline's epochs do."""
        for _ in self._draw(-self.batches % self.per_epoch):
            pass

    def summary(self, fed_s: float, compile_threads: set[int]) -> InputCost:
        """The pipeline's cost over `fed_s`, the seconds it fed training (compile step excluded);
        `compile_threads` started during the compile step, and are the framework's, not the pipeline's."""
        threads = {tid: seconds for tid, seconds in thread_cpu_s().items()
                   if tid not in self.threads_before and tid not in compile_threads}
        cpu = children_cpu_s() - self.children_before + sum(threads.values()) + self.next_cpu_s
        self.pipeline.close()
        return InputCost(input_workers=self.pipeline.workers, input_stall_s=self.stall_s,
                         input_stall_share=_share(self.stall_s, fed_s), input_cpu_s=cpu, input_cpu_how=INPUT_CPU_HOW)


class Trainer:
    """Feeds batches to an adapter in timed windows. The job's first step is timed alone (it
    compiles), the next `warmup_steps` are untimed, and every later window of `window` steps
    ends with a device sync before its clock stops. Losses are read only between windows.

    The input path (`job.data.input`) decides where each batch's host-to-device copy falls: `step`
    hands NumPy arrays to the step, which copies inside the timed window; `prefetch` places the
    next batch on the device right after the current step is dispatched, as a prefetching loader
    does (the window's first batch is placed before its clock starts); `resident` places all of a
    window's batches before its clock starts, as if the data set lived on the device. `native`
    batches come from the framework's own pipeline, placed already, and are drawn inside the clock:
    the pipeline's time is part of every window (the first batch only is drawn before the compile
    step's clock)."""

    def __init__(self, adapter: Adapter, job: Job, channel: Channel):
        self.adapter, self.job, self.channel = adapter, job, channel
        self.step = 0
        self.compile_s = None
        self.compiles_after_warmup = None
        self.window_rows: list[Window] = []
        # what else ran on the worker's cores during each window; its own child processes (a native
        # pipeline's workers) are the job's
        self.monitor = CoreMonitor(children=True)
        # Seconds of every window (compile step, warm-up and short tails included) on which other
        # processes took more than BUSY_THRESHOLD of the cores: what an epoch or a time to accuracy,
        # which are sums, owe to contention.
        self.busy_s = 0.0
        self.compile_busy_s = 0.0
        self.compile_threads: set[int] = set()  # threads the compile step started (the framework's own)
        self.device_peak: int | None = None  # bytes: the largest device peak of training after the warm-up

    def _check(self, losses: list, first_step: int) -> np.ndarray:
        values = self.adapter.losses_to_numpy(losses)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise Diverged(first_step + int(bad[0]), float(values[bad[0]]))
        return values

    def _before_clock(self, window: list) -> list:
        """The window's batches as its steps will take them, placed as far as the input path
        places them before the clock starts."""
        ahead = {"step": 0, "prefetch": 1, "resident": len(window), "native": 0}[self.job.data.input]
        placed = [self.adapter.place(*batch) for batch in window[:ahead]]
        if placed:
            self.adapter.wait(placed[-1])
        return placed + window[ahead:]

    def _steps(self, window) -> list:
        """The window's steps, inside its clock; `prefetch` places each next batch meanwhile, and
        `native` draws each batch from its pipeline (`window` is then an iterator)."""
        adapter, losses = self.adapter, []
        for index, batch in enumerate(window):
            losses.append(adapter.train_step(*batch))
            if self.job.data.input == "prefetch" and index + 1 < len(window):
                window[index + 1] = adapter.place(*window[index + 1])
        return losses

    def run(self, batches, epoch: int) -> np.ndarray:
        """Train on every batch of `batches`; return the step losses."""
        adapter, job = self.adapter, self.job
        losses = []
        batches = iter(batches)
        native = job.data.input == "native"
        if self.step == 0:
            first = self._before_clock([next(batches)])
            threads = set(thread_cpu_s())
            before = self.monitor.sample()
            start = time.perf_counter()
            loss = self._steps(first)
            adapter.synchronize()
            self.compile_s = time.perf_counter() - start
            self.compile_threads = set(thread_cpu_s()) - threads
            self.compile_busy_s = self.count_busy(self.compile_s, self.monitor.between(before, self.monitor.sample()))
            losses.extend(self._check(loss, 0))
            self.step = 1
            if job.timing.warmup_steps == 0:
                self._end_warmup()
        while True:
            warm = self.step <= job.timing.warmup_steps
            size = job.timing.warmup_steps + 1 - self.step if warm else job.timing.window
            if native:
                window = itertools.islice(batches, size)
            else:
                window = self._before_clock([batch for _, batch in zip(range(size), batches)])
                if not window:
                    return np.asarray(losses, np.float32)
            before = self.monitor.sample()
            start = time.perf_counter()
            window_losses = self._steps(window)
            adapter.synchronize()
            seconds = time.perf_counter() - start
            if not window_losses:  # the native pipeline had no batch left
                return np.asarray(losses, np.float32)
            shares = self.monitor.between(before, self.monitor.sample())
            self.count_busy(seconds, shares)
            steps = len(window_losses)
            losses.extend(self._check(window_losses, self.step))
            if warm and self.step + steps > job.timing.warmup_steps:
                self._end_warmup()
            elif not warm and steps == job.timing.window:  # a short tail window would skew the median
                row = Window(window=len(self.window_rows), epoch=epoch, first_step=self.step, steps=steps,
                             seconds=seconds, step_ms=1000 * seconds / steps, **shares)
                self.window_rows.append(row)
                self.channel.send("window", row=asdict(row))  # appended by the parent at once: an interrupt keeps it
            self.step += steps
            self.channel.send("progress", step=self.step)
            self.channel.hand_on_turn()  # outside the timed window: other workers run meanwhile

    def _end_warmup(self) -> None:
        """The warm-up is over (its last step synchronised): compiles from here are recompiles, and
        the device peak starts afresh, without what compiling and autotuning allocated."""
        self.compiles_after_warmup = self.adapter.compile_count()
        self.adapter.reset_peak_device_memory()

    def record_device_peak(self) -> None:
        """Fold the adapter's device peak since its last reset into `device_peak`, once the warm-up
        is over (before, it still holds what compiling allocated)."""
        peak = self.adapter.peak_device_memory() if self.warmed_up else None
        if peak is not None:
            self.device_peak = max(self.device_peak or 0, peak)

    @contextlib.contextmanager
    def outside_device_peak(self):
        """Work between training segments whose memory is not training's (an evaluation, which
        compiles and autotunes for its own shapes): the peak so far is recorded before it and
        starts afresh after it."""
        self.record_device_peak()
        yield
        if self.warmed_up:
            self.adapter.reset_peak_device_memory()

    @property
    def warmed_up(self) -> bool:
        return self.compiles_after_warmup is not None

    def count_busy(self, seconds: float, shares: dict) -> float:
        """Count `seconds` as busy when other processes took more than BUSY_THRESHOLD of the
        cores meanwhile; the seconds counted."""
        busy = seconds if shares["others_cpu"] is not None and shares["others_cpu"] > BUSY_THRESHOLD else 0.0
        self.busy_s += busy
        return busy

    def timing_summary(self) -> tuple[StepTimes, Throughput, Contention]:
        """The summary row's parts that the timed windows give: step times, throughput, contention."""
        times = step_time_summary(np.array([row.step_ms for row in self.window_rows]))
        baseline = self.compiles_after_warmup
        throughput = Throughput(
            images_per_s=self.job.global_batch / (times.step_ms_median / 1000) if times.windows else None,
            recompiles=None if baseline is None else self.adapter.compile_count() - baseline)
        return times, throughput, self.contention_summary()

    def contention_summary(self) -> Contention:
        """The median share of the worker's cores that other processes took, the windows above
        BUSY_THRESHOLD, and whether the job's median rests on them (BUSY_SHARE of its windows)."""
        shares = np.array([row.others_cpu for row in self.window_rows if row.others_cpu is not None])
        if not len(shares):
            return Contention(contention=None, busy_windows=None, busy=None)
        flagged = int((shares > BUSY_THRESHOLD).sum())
        return Contention(contention=float(np.median(shares)), busy_windows=flagged,
                          busy=bool(flagged >= BUSY_SHARE * len(shares)))


@dataclass(frozen=True)
class Throughput:
    """A summary row's images per second at the median step time, and the compiles after the warm-up."""

    images_per_s: float | None
    recompiles: int | None


class TimeToAccuracy:
    """Time to a target test accuracy, MLPerf-style: training time to the first evaluation that
    reaches it (compile included, evaluation excluded) and wall time (evaluation included), each
    with the share of it that fell in busy windows (a sum has no median to shield it)."""

    def __init__(self, target: float | None):
        self.target, self.train_s, self.wall_s, self.best = target, 0.0, 0.0, 0.0
        self.busy_train_s = self.busy_wall_s = 0.0
        self.reached: TargetRace | None = None

    def record(self, epoch: int, steps: int, train_s: float, eval_s: float, accuracy: float, busy_train_s: float = 0.0,
               busy_eval_s: float = 0.0) -> bool:
        """Account the training since the previous evaluation (an epoch, or --eval-every steps) and
        this evaluation, and the seconds of each that were busy; True when the job should stop here."""
        self.train_s += train_s
        self.wall_s += train_s + eval_s
        self.busy_train_s += busy_train_s
        self.busy_wall_s += busy_train_s + busy_eval_s
        self.best = max(self.best, accuracy)
        if self.target is not None and self.reached is None and accuracy >= self.target:
            self.reached = TargetRace(epochs_to_target=epoch, steps_to_target=steps, train_s_to_target=self.train_s,
                                      wall_s_to_target=self.wall_s,
                                      train_busy_share_to_target=_share(self.busy_train_s, self.train_s),
                                      wall_busy_share_to_target=_share(self.busy_wall_s, self.wall_s))
        return self.reached is not None

    def summary(self) -> TargetRace:
        if self.target is None:
            return TargetRace()
        return replace(self.reached or TargetRace(), target_accuracy=self.target,
                       target_reached=self.reached is not None, best_accuracy=self.best)


@dataclass(frozen=True)
class TargetRace:
    """A summary row's time to accuracy (all None without a target, the *_to_target ones None
    when it was not reached)."""

    target_accuracy: float | None = None
    target_reached: bool | None = None
    best_accuracy: float | None = None
    epochs_to_target: float | None = None
    steps_to_target: int | None = None
    train_s_to_target: float | None = None
    wall_s_to_target: float | None = None
    train_busy_share_to_target: float | None = None
    wall_busy_share_to_target: float | None = None


def _share(busy_s: float, total_s: float) -> float:
    """The busy part of a sum (capped: a window can spill past the untimed edges of the sum)."""
    return min(busy_s / total_s, 1.0) if total_s > 0 else 0.0


def median_epoch_busy_share(epochs: list[tuple[float, float]]) -> float:
    """The busy share behind a median of epoch times: the largest share among the epoch(s) whose
    time is the median (the middle one, or the two middle ones of an even count)."""
    ordered = sorted(epochs)
    middle = ordered[(len(ordered) - 1) // 2: len(ordered) // 2 + 1]
    return max(_share(busy_s, seconds) for seconds, busy_s in middle)


def evaluation_segments(step: int, batches: int, every: int, last_epoch: bool) -> list[tuple[slice, bool]]:
    """An epoch's batches cut where the test set is evaluated, each piece with whether an
    evaluation follows it: after the epoch when `every` is 0, else after every `every`-th step of
    the run (`step`: the steps taken before this epoch) and after the run's last step."""
    if not every:
        return [(slice(0, batches), True)]
    ends = [end for end in range(1, batches + 1) if (step + end) % every == 0]
    if last_epoch and ends[-1:] != [batches]:
        ends.append(batches)
    starts = [0, *ends]
    pieces = [(slice(a, b), True) for a, b in zip(starts, ends)]
    return pieces + ([(slice(starts[-1], batches), False)] if starts[-1] < batches else [])


def copy_ms(adapter: Adapter, images: np.ndarray, labels: np.ndarray, repeats: int = 5) -> float:
    """What one batch's host-to-device copy costs, whatever the input path: the median of
    `repeats` placements, each waited for."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        adapter.wait(adapter.place(images, labels))
        seconds.append(time.perf_counter() - start)
    return 1000 * float(np.median(seconds))


def evaluate(adapter: Adapter, dataset: datasets.Dataset, batch_size: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The mean test loss, the class predicted for each test image scored, and the labels it was
    scored against, in test-set order."""
    loss_sum, predicted, labels = 0.0, [], []
    for images, batch_labels in datasets.test_batches(dataset, batch_size):
        batch_loss, batch_predicted = adapter.evaluate(images, batch_labels)
        loss_sum += batch_loss
        predicted.append(batch_predicted)
        labels.append(batch_labels)
    labels = np.concatenate(labels)
    return loss_sum / len(labels), np.concatenate(predicted), labels


def run_benchmark(job: Job, channel: Channel) -> dict:
    dataset = load_dataset(job)
    per_epoch = datasets.steps_per_epoch(dataset, job.global_batch)
    if per_epoch == 0:
        raise ValueError(f"batch size {job.global_batch} exceeds the {len(dataset.train_labels)} training examples")
    total_steps = job.timing.steps + job.timing.warmup_steps + 1 if job.timing.steps else job.timing.epochs * per_epoch
    baseline_rss = current_rss_mb()

    start = time.perf_counter()
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.process_threads)
    import_s = time.perf_counter() - start
    tuned = tune(adapter_cls, job)

    start = time.perf_counter()
    adapter = adapter_cls(job.what.model, job.placement.device, job.what.variant, job.train_config(total_steps),
                          job.parallel)
    adapter.set_params(init_params(job.what.model, job.seed))
    build_s = time.perf_counter() - start
    channel.send("started", total_steps=total_steps)

    local = job.global_batch // job.parallel.processes  # this process's part of a global batch
    copy = copy_ms(adapter, dataset.train_images[:local], dataset.train_labels[:local])
    trainer = Trainer(adapter, job, channel)
    native = job.data.input == "native"
    if native:  # the pipeline serves the timing-only steps' epochs, then the evaluated ones
        timing_epochs = -(-total_steps // per_epoch) * bool(job.timing.steps)
        feed = NativeFeed(adapter, dataset, job, timing_epochs + job.timing.epochs)
    else:
        feed = Feed(dataset, job)
    fed_s = 0.0  # seconds of training fed by the pipeline (each trainer.run, less the others' turns)
    result = {"framework_version": adapter_cls.version(), "jit_compile": adapter.jit_compile,
              "import_s": import_s, "build_s": build_s,
              "warmup_steps": job.timing.warmup_steps, "epochs": job.timing.epochs, "baseline_rss_mb": baseline_rss,
              "threads": (adapter.applied_threads() or len(os.sched_getaffinity(0))) * job.processes_per_node,
              "global_batch": job.global_batch, "nodes": job.placement.nodes, "input": job.data.input,
              "copy_ms": copy, **tuned}
    try:
        if job.timing.steps:
            start, waited = time.perf_counter(), channel.waited_s
            trainer.run(itertools.islice(feed.stream(), total_steps), epoch=0)
            fed_s += time.perf_counter() - start - (channel.waited_s - waited)
            if native and job.timing.epochs:
                feed.skip_to_epoch_end()
        epoch_times = []  # (seconds, busy seconds) of each whole epoch
        race = TimeToAccuracy(job.timing.target_accuracy)
        pending_losses, pending_s, pending_busy_s = [], 0.0, 0.0  # training since the last evaluation
        for epoch in range(job.timing.epochs):
            compiles_here = trainer.step == 0
            # The suite's batches are shuffled, augmented and hashed before the epoch's clock starts; a
            # native pipeline's are drawn inside it.
            batches = feed.epoch(epoch) if native else iter(list(feed.epoch(epoch)))
            epoch_s, epoch_busy_s, stop = 0.0, 0.0, False
            for segment, evaluated in evaluation_segments(trainer.step, per_epoch, job.timing.eval_every,
                                                          epoch == job.timing.epochs - 1):
                start, waited, busy = time.perf_counter(), channel.waited_s, trainer.busy_s
                pending_losses.extend(trainer.run(itertools.islice(batches, segment.stop - segment.start), epoch))
                train_s = time.perf_counter() - start - (channel.waited_s - waited)  # not the others' turns
                fed_s += train_s
                busy_s = trainer.busy_s - busy
                epoch_s, pending_s = epoch_s + train_s, pending_s + train_s
                epoch_busy_s, pending_busy_s = epoch_busy_s + busy_s, pending_busy_s + busy_s
                if not evaluated:
                    continue
                with trainer.outside_device_peak():
                    before = trainer.monitor.sample()
                    start = time.perf_counter()
                    test_loss, predicted, labels = evaluate(adapter, dataset, job.data.eval_batch_size)
                    eval_s = time.perf_counter() - start
                test_accuracy = float(np.mean(predicted == labels))
                eval_busy_s = trainer.count_busy(eval_s, trainer.monitor.between(before, trainer.monitor.sample()))
                done = trainer.step / per_epoch  # epochs, fractional between epochs' ends
                row = Evaluation(epoch=int(done) if done.is_integer() else round(done, 4), step=trainer.step,
                                 train_loss=float(np.mean(pending_losses)), test_loss=test_loss,
                                 test_accuracy=test_accuracy, test_size=len(dataset.test_labels),
                                 evaluated=len(labels), train_s=pending_s, eval_s=eval_s,
                                 train_busy_share=_share(pending_busy_s, pending_s))
                channel.send("epoch", row=asdict(row))
                # class indices (0-9) as JSON integers: the parent keeps every evaluation's (recording.py)
                channel.send("predictions", step=trainer.step, predictions=predicted.astype(np.uint8).tolist(),
                             labels=labels.astype(np.uint8).tolist())
                result.update(train_loss=row.train_loss, test_loss=test_loss, test_accuracy=test_accuracy)
                stop = race.record(row.epoch, trainer.step, pending_s, eval_s, test_accuracy, pending_busy_s,
                                   eval_busy_s)
                pending_losses, pending_s, pending_busy_s = [], 0.0, 0.0
                if stop:
                    break
            if segment.stop == per_epoch:  # a whole epoch: its training time counts in the median
                compile_s, compile_busy_s = (trainer.compile_s, trainer.compile_busy_s) if compiles_here else (0.0, 0.0)
                epoch_times.append((epoch_s - compile_s, epoch_busy_s - compile_busy_s))
                result["epoch_s"] = float(np.median([seconds for seconds, _ in epoch_times]))
                result["epoch_images_per_s"] = per_epoch * job.global_batch / result["epoch_s"]
                result["epoch_busy_share"] = median_epoch_busy_share(epoch_times)
            if stop:
                break
        result.update(asdict(race.summary()))
        result["status"] = "ok"
    except Diverged as diverged:
        result.update(status="diverged", error=str(diverged), diverged_step=diverged.step)
    trainer.record_device_peak()  # before the profiled steps, whose profiler allocates too
    if job.timing.profile and result["status"] == "ok":
        profile(adapter, dataset, job, channel)
    # The summary row's fields, which the parent joins to the job's identity; one its table lacks fails the job here.
    return merged("summary", result, *trainer.timing_summary(),
                  feed.summary(fed_s - (trainer.compile_s or 0.0), trainer.compile_threads),
                  {"compile_s": trainer.compile_s, "peak_rss_mb": peak_rss_mb(),
                   "peak_device_mb": _mb(trainer.device_peak)})


def profile(adapter: Adapter, dataset: datasets.Dataset, job: Job, channel: Channel) -> None:
    """--profile: a few more steps under the framework's own profiler, after every timed one, on
    batches placed on the device beforehand. The traces go to a fresh folder that the parent moves
    into the run folder; a profiler that fails costs the job its profile, not its timings."""
    from benchmarks.harness import profiling

    batches = itertools.islice(datasets.train_batches(dataset, job.global_batch, job.seed, 0, job.data.augment),
                               profiling.STEPS)
    placed = [adapter.place(job.parallel.local(images), job.parallel.local(labels)) for images, labels in batches]
    adapter.wait(placed[-1])
    if not job.leads:  # the other processes of a data-parallel job keep step with the profiled one
        for batch in placed:
            adapter.train_step(*batch)
        adapter.synchronize()
        return
    folder = Path(tempfile.mkdtemp(prefix=f"profile-{job.job_id}-"))
    try:
        channel.send("profile", folder=str(folder), rows=capture_profile(adapter, placed, folder))
    except Exception as error:
        traceback.print_exc()
        channel.send("profile", folder=str(folder), rows=[], error=f"{type(error).__name__}: {error}")


def capture_profile(adapter: Adapter, batches: list, folder: Path) -> list[dict]:
    """Profile `len(batches)` training steps of a warmed-up adapter into `folder`; the op rows."""
    import pandas as pd

    from benchmarks.harness import profiling

    if adapter.framework not in profiled():
        raise ValueError(f"no profiler for {adapter.framework} (profiles: {', '.join(profiled())})")
    folder.mkdir(parents=True, exist_ok=True)
    ops = pd.DataFrame(adapter.profile(batches, folder), columns=profiling.RECORDED)
    if ops.empty:
        raise RuntimeError(f"the {adapter.framework} profiler recorded no operation of the training step")
    return profiling.op_table(adapter.op_category, ops, len(batches)).to_dict("records")


def _mb(value: int | None) -> float | None:
    return None if value is None else value / 2**20



def run_probe(job: Job, channel: Channel) -> dict:
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.placement.threads)
    tuned = tune(adapter_cls, job)
    adapter_cls(job.what.model, job.placement.device, job.what.variant, job.train_config(1))
    return {"status": "ok", "framework_version": adapter_cls.version(), "build": adapter_cls.build_info(), **tuned}


def run_overhead(job: Job, channel: Channel) -> dict:
    """The harness's own cost: the same `timing.window` steps timed as one of the runner's windows
    (`Trainer`: loss checks, progress message, turn hand-off, the job's input path) and by a bare
    loop over batches already on the device with one sync at the end, in `timing.pairs` pairs back
    to back, so that the machine's drift falls on both alike. The ratio is the median of the pairs'
    ratios."""
    dataset = load_dataset(job)
    timing = job.timing
    batches = list(datasets.train_batches(dataset, job.what.batch_size, job.seed, 0))
    warmup, batches = batches[: timing.warmup_steps + 1], batches[: timing.window]
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.placement.threads)
    tune(adapter_cls, job)
    adapter = adapter_cls(job.what.model, job.placement.device, job.what.variant, job.train_config(1))
    adapter.set_params(init_params(job.what.model, job.seed))
    trainer = Trainer(adapter, job, channel)
    trainer.run(warmup, epoch=0)  # compile and warm up, all untimed: the first window is a pair's
    placed = [adapter.place(*batch) for batch in batches]
    adapter.wait(placed[-1])
    minimal_ms = []
    for _ in range(timing.pairs):
        start = time.perf_counter()
        for images, labels in placed:
            adapter.train_step(images, labels)
        adapter.synchronize()
        minimal_ms.append(1000 * (time.perf_counter() - start) / len(batches))
        trainer.run(batches, epoch=0)  # one timed window
    runner_ms = np.array([row.step_ms for row in trainer.window_rows])
    ratios = runner_ms / np.array(minimal_ms)
    return {"status": "ok", "framework_version": adapter_cls.version(), "pairs": len(runner_ms),
            "copy_ms": copy_ms(adapter, *batches[0]), "runner_ms": float(np.median(runner_ms)),
            "minimal_ms": float(np.median(minimal_ms)), "ratio": float(np.median(ratios)),
            "ratio_iqr": "-".join(f"{q:.3f}" for q in np.percentile(ratios, [25, 75]))}


def run_hot_path(job: Job, channel: Channel) -> dict:
    """The suite's own code on the training step's hot path against the framework's built-in
    equivalent (`Adapter.builtin_equivalents`), in this one process: for each part, windows of
    `timing.window` steps on batches already on the device, each ending with a wait for its last
    result, the suite's and the built-in's alternating for `timing.pairs` pairs (which goes first
    alternates too), so that the machine's drift and any order effect fall on both alike. Per part:
    the median step of each side and the median of the pairs' ratios, suite over built-in."""
    dataset = load_dataset(job)
    timing = job.timing
    batches = list(datasets.train_batches(dataset, job.what.batch_size, job.seed, 0))[: timing.window]
    adapter_cls = load_adapter(job.what.framework)
    adapter_cls.configure_threads(job.placement.threads)
    tuned = tune(adapter_cls, job)
    adapter = adapter_cls(job.what.model, job.placement.device, job.what.variant, job.train_config(1))
    adapter.set_params(init_params(job.what.model, job.seed))
    placed = [adapter.place(*batch) for batch in batches]
    adapter.wait(placed[-1])

    def window_ms(step) -> float:
        start = time.perf_counter()
        for images, labels in placed:
            result = step(images, labels)
        adapter.wait((result,))
        return 1000 * (time.perf_counter() - start) / len(placed)

    parts = []
    for part, sides in adapter.builtin_equivalents().items():
        for step in sides:  # compile and warm up, untimed
            for images, labels in placed[: timing.warmup_steps + 1]:
                result = step(images, labels)
            adapter.wait((result,))
        times = np.empty((timing.pairs, 2))
        for pair in range(timing.pairs):
            for side in (0, 1) if pair % 2 == 0 else (1, 0):
                times[pair, side] = window_ms(sides[side])
        parts.append({"part": part, "pairs": timing.pairs, "suite_ms": float(np.median(times[:, 0])),
                      "builtin_ms": float(np.median(times[:, 1])),
                      "ratio": float(np.median(times[:, 0] / times[:, 1])),
                      "ratio_iqr": "-".join(f"{q:.3f}" for q in np.percentile(times[:, 0] / times[:, 1], [25, 75]))})
    return {"status": "ok", "framework_version": adapter_cls.version(), "parts": parts, **tuned}


def run_peak(job: Job, channel: Channel) -> dict:
    """The machine's peak on the run's device and cores (see `benchmarks.harness.efficiency`), with
    the check a timed window gets: the share of the cores other processes took meanwhile, and
    whether that makes it busy (a peak measured so is too low, and every `of_peak` too high)."""
    from benchmarks.harness.efficiency import matmul_peak

    monitor = CoreMonitor()
    before = monitor.sample()
    peak = matmul_peak(job.placement.device, job.training.precision)
    others = monitor.between(before, monitor.sample())["others_cpu"]
    return {"status": "ok", **peak, "others_cpu": others, "busy": others is not None and others > BUSY_THRESHOLD}

