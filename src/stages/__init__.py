"""One thin entry point per DVC stage; run as ``python -m src.stages.<stage>``.

This package acts when imported, before a stage module's own imports load TensorFlow (seconds),
and only when a stage runs as a program: a signal while the libraries load ends the stage in
one line (``run_stage`` installs the handlers that clean up once it starts), and TensorFlow's
start-up notices are filtered. Importing a stage module from a test or a tool does nothing.
"""

import sys

from src.finetune.entrypoint import exit_on_signals_while_starting, quiet_tensorflow

_command = sys.orig_argv
if "-m" in _command[:-1] and _command[_command.index("-m") + 1].startswith(f"{__name__}."):
    exit_on_signals_while_starting(_command[_command.index("-m") + 1].rsplit(".", 1)[1])
    quiet_tensorflow()
