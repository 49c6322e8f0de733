"""Command-line vocabulary shared by `benchmarks.run` and `benchmarks.parity`: argument types
that reject bad values argparse-style (exit status 2, one line naming the accepted values), and
the selection of frameworks, variants, model, device and tuning profiles they both run."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from functools import cache

import pandas as pd
from rich.console import Console

from frameworks import REGISTRY, FrameworkEntry, UnknownFramework, resolve
from frameworks.base import MODELS, PRECISIONS
from frameworks.tuning import DEFAULT_PROFILE, PROFILES

DEVICES = ("cpu", "cuda")


@cache
def console() -> Console:
    # No emoji codes: a label such as "faulty:ok: skipped" must not print as "faulty🆗 skipped".
    return Console(highlight=False, emoji=False, soft_wrap=True)  # a long line stays one line in logs


def dataframe_to_text(table: pd.DataFrame) -> str:
    return table.to_string(index=False, float_format=lambda x: f"{x:.3g}")


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default stated once: appended where its help does not already say it, and only
    where there is one (not None, not an unset flag); a list default as the comma-separated text
    the option takes."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS  # 0 is a default, False is not
        if "default" in text or unset or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


# --- Argument types -----------------------------------------------------------------------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    if _integer(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer (1 or more)")
    return int(text)


def non_negative_int(text: str) -> int:
    if _integer(text) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def unique_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry")
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise argparse.ArgumentTypeError(f"{text!r} lists {', '.join(duplicates)} more than once")
    return items


def positive_ints(text: str) -> list[int]:
    """A comma-separated sweep of distinct positive integers, such as 32,128,512."""
    return [positive_int(item) for item in unique_list(text)]


def address(text: str) -> str:
    """HOST:PORT."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


# --- Selection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What to run: (framework, variant) pairs in registry order, on each model, on one device."""

    pairs: tuple[tuple[str, str], ...]
    models: tuple[str, ...]
    device: str
    threads: int
    precision: str
    job_timeout: float
    profiles: tuple[str, ...] = (DEFAULT_PROFILE,)  # tuning profiles, each run for every pair

    def name(self, framework: str, variant: str, profile: str) -> str:
        """framework:variant, with the profile in brackets when the selection runs several."""
        return f"{framework}:{variant}" + (f" [{profile}]" if len(self.profiles) > 1 else "")


def add_selection_arguments(parser: argparse.ArgumentParser, threads: tuple[int, str] | None = None) -> None:
    """The options that select what runs; `threads` gives the --threads default and its help where
    a command's workers use cores otherwise than the runner's (which takes every core)."""
    names = ", ".join(REGISTRY)
    parser.add_argument("--framework", default="all", type=unique_list,
                        help=f"comma-separated: all, {names} (aliases torch, tf)")
    parser.add_argument("--variant", default="default", type=unique_list,
                        help="default (each framework's first), all, or framework:variant entries such as "
                             "pytorch:compile,tensorflow:xla; a framework named here runs only the listed "
                             "variants, the others their default")
    parser.add_argument("--model", default=["lenet"], type=unique_list,
                        help=f"comma-separated, each one run (a sweep): {', '.join(MODELS)}")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="where every job trains: cpu, or cuda (the GPUs that CUDA_VISIBLE_DEVICES shows)")
    default, help = threads or (len(os.sched_getaffinity(0)),
                                "CPU cores each worker is pinned to and each framework's intra-op threads "
                                "(default: all %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=default, help=help)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 disables TF32 in all three frameworks; tf32 allows it on GPU; bf16 is "
                             "mixed precision (float32 weights and loss, bfloat16 compute)")
    parser.add_argument("--tuning", default=DEFAULT_PROFILE, choices=(*PROFILES, "both"),
                        help="stock: each framework as pip installs it; tuned: each framework's own documented "
                             "performance settings for the device and precision (docs/tuning.md: the table); both: "
                             "every job under each profile, side by side")
    parser.add_argument("--job-timeout", type=positive_float, default=3600.0, metavar="SECONDS",
                        help="a job running longer is stopped and recorded as timeout")


def _frameworks(parser, names: list[str]) -> list[FrameworkEntry]:
    if names == ["all"]:
        return list(REGISTRY.values())
    if "all" in names:
        parser.error(f"argument --framework: {','.join(names)!r} combines 'all' with other names "
                     f"(give one or the other)")
    try:
        entries = [resolve(name) for name in names]
    except ValueError as error:  # UnknownFramework, or an extra framework the registry refuses
        parser.error(f"argument --framework: {error}")
    if len({entry.name for entry in entries}) != len(entries):
        parser.error(f"argument --framework: {','.join(names)} names a framework twice (through an alias)")
    return entries


def _variants(parser, entries: list[FrameworkEntry], specs: list[str]) -> list[tuple[str, str]]:
    if specs in (["default"], ["all"]):
        return [(e.name, v) for e in entries for v in (e.variants if specs == ["all"] else e.variants[:1])]
    mixed = sorted({"all", "default"} & set(specs))
    if mixed:
        parser.error(f"argument --variant: {','.join(specs)!r} combines {mixed[0]!r} with framework:variant "
                     f"entries (give one or the other)")
    chosen: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, variant = spec.partition(":")
        if not sep:
            parser.error(f"argument --variant: {spec!r} is not framework:variant (or 'all', 'default')")
        try:
            entry = resolve(name)
        except UnknownFramework as error:
            parser.error(f"argument --variant: {error}")
        if entry.name not in {e.name for e in entries}:
            parser.error(f"argument --variant: {spec!r} names {entry.name}, which --framework does not select")
        if variant != "all" and variant not in entry.variants:
            parser.error(f"argument --variant: unknown {entry.name} variant {variant!r} "
                         f"(choose from: all, {', '.join(entry.variants)})")
        chosen.setdefault(entry.name, []).extend(entry.variants if variant == "all" else [variant])
    return [(e.name, v) for e in entries for v in dict.fromkeys(chosen.get(e.name, e.variants[:1]))]


def selection_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Selection:
    entries = _frameworks(parser, args.framework)
    available = len(os.sched_getaffinity(0))
    if args.threads > available:
        parser.error(f"argument --threads: {args.threads} exceeds the {available} cores this process may use")
    pairs = _variants(parser, entries, args.variant)
    unknown = [model for model in args.model if model not in MODELS]
    if unknown:
        parser.error(f"argument --model: unknown model {unknown[0]!r} (choose from: {', '.join(MODELS)})")
    profiles = PROFILES if args.tuning == "both" else (args.tuning,)
    return Selection(tuple(pairs), tuple(args.model), args.device, args.threads, args.precision, args.job_timeout,
                     profiles)


