"""Library code shared by the pipeline's stages: one module per concern.

When TensorFlow loads, its C++ core writes start-up notices straight to the process's stderr
before its logging can be configured, so ``TF_CPP_MIN_LOG_LEVEL`` stops only some of them: that
oneDNN is on, that no CUDA driver was found, which CPU instructions the build does not use, and
``failed call to cuInit`` when it probes for a GPU on a machine without one. They read like
errors and bury the stage's own log. So the first import of ``tensorflow`` (and its probe of the
devices) runs with stderr captured, and every captured line that is not one of those notices is
passed on: a real error still shows.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STARTUP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] .*(kernel driver|No such file)"
)


@contextmanager
def startup_notices_filtered() -> Iterator[None]:
    """Capture what is written to stderr (the file descriptor, as C++ writes it) and pass on
    the lines that are not TensorFlow's start-up notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not STARTUP_NOTICES.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tensorflow`` once, and loads it (and probes the devices) with the notices
    filtered; every other import is left to the usual finders."""

    def find_spec(self, name: str, path: object, target: object = None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with startup_notices_filtered():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # the CUDA probe, once, now


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())
