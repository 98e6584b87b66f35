"""One thin entry point per DVC stage; run as ``python -m src.stages.<stage>``.

This package acts when imported, before a stage module's own imports load TensorFlow (seconds),
and only when a stage runs as a program: a signal while the libraries load ends the stage in
one line (``run_stage`` installs the handlers that clean up once it starts), and TensorFlow's
start-up notices are filtered. A stage started by a Python without the project's packages
(`dvc repro` run as `.venv/bin/dvc`, the environment not activated: DVC's `python` is then
another one) stops in one line saying so. Importing a stage module from a test or a tool does
nothing.
"""

import sys

_command = sys.orig_argv
_as_program = "-m" in _command[:-1] and _command[_command.index("-m") + 1].startswith(
    f"{__name__}."
)
try:
    from src.finetune.entrypoint import exit_on_signals_while_starting, quiet_tensorflow
except ModuleNotFoundError as _missing:
    if not _as_program:
        raise
    sys.stderr.write(
        f"error: {sys.executable} runs the stage, and it lacks the project's packages "
        f"({_missing.name} is missing): run `make repro`, or `source .venv/bin/activate` "
        "before `dvc repro`\n"
    )
    raise SystemExit(1) from None

if _as_program:
    exit_on_signals_while_starting(_command[_command.index("-m") + 1].rsplit(".", 1)[1])
    quiet_tensorflow()
