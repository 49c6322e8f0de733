"""`python -m tests.apart [PYTEST ARGS]`: the in-process tests of every framework that runs on another
Keras backend than the default run's (`conftest.APART`), each in a pytest process of its own on that
backend (`KERAS_BACKEND=<backend> pytest -m <framework>`), since Keras loads one backend per process.
Exits with the first failing run's status, after running them all."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import APART, ROOT, keras_backend


def main(argv: list[str]) -> int:
    status = 0
    for framework in APART:
        backend = keras_backend(framework)
        print(f"KERAS_BACKEND={backend} pytest -m {framework} {' '.join(argv)}".rstrip(), flush=True)
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", framework, *argv], cwd=ROOT,
                              env={**os.environ, "KERAS_BACKEND": backend})
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
