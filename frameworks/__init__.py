"""Registry of framework adapters: CLI names, aliases and variants, importing a framework only
when a job asks for it (so `--framework jax` never pays for importing TensorFlow)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from frameworks.base import Adapter


@dataclass(frozen=True)
class FrameworkEntry:
    name: str
    module: str  # imported lazily by `load_adapter`
    variants: tuple[str, ...]  # the first is the default
    aliases: tuple[str, ...] = ()
    # Data parallelism: one process per device (PyTorch DDP), or one process per machine driving
    # all its devices (tf.distribute, JAX sharding).
    process_per_device: bool = False

    @property
    def default_variant(self) -> str:
        return self.variants[0]


REGISTRY: dict[str, FrameworkEntry] = {
    "pytorch": FrameworkEntry("pytorch", "frameworks.pytorch", ("eager", "compile"), ("torch",),
                              process_per_device=True),
    "tensorflow": FrameworkEntry(
        "tensorflow", "frameworks.tensorflow_keras", ("function", "eager", "xla", "fit"), ("tf",)
    ),
    "jax": FrameworkEntry("jax", "frameworks.jax_flax", ("jit",)),
}

# Extra adapters, e.g. a third-party framework or the test suite's fault-injecting one:
# "name=package.module[:variant,variant...]" entries separated by ";".
EXTRA_ENV = "BENCHMARKS_EXTRA_FRAMEWORKS"


def _extra_entries() -> dict[str, FrameworkEntry]:
    entries = {}
    for spec in filter(None, os.environ.get(EXTRA_ENV, "").split(";")):
        name, _, rest = spec.partition("=")
        module, _, variants = rest.partition(":")
        entries[name] = FrameworkEntry(name, module, tuple(variants.split(",")) if variants else ("default",))
    return entries


def registry() -> dict[str, FrameworkEntry]:
    return {**REGISTRY, **_extra_entries()}


class UnknownFramework(ValueError):
    pass


def resolve(name: str) -> FrameworkEntry:
    """The entry for a CLI name or alias; UnknownFramework names the accepted ones."""
    entries = registry()
    for entry in entries.values():
        if name == entry.name or name in entry.aliases:
            return entry
    accepted = ", ".join(sorted([*entries, *(a for e in entries.values() for a in e.aliases)]))
    raise UnknownFramework(f"unknown framework {name!r} (choose from: all, {accepted})")


def load_adapter(name: str) -> type[Adapter]:
    """Import the framework's module (and so the framework) and return its adapter class."""
    return importlib.import_module(resolve(name).module).ADAPTER
