"""One thin entry point per DVC stage; run as ``python -m src.stages.<stage>``.

A stage is stopped cleanly from its first moment: a signal while its libraries load (seconds,
for TensorFlow) ends it in one line, before ``run_stage`` installs the handlers that clean up.
"""

import sys

from src.finetune.errors import exit_on_signals_while_starting

_command = sys.orig_argv
if "-m" in _command[:-1] and _command[_command.index("-m") + 1].startswith(f"{__name__}."):
    exit_on_signals_while_starting(_command[_command.index("-m") + 1].rsplit(".", 1)[1])
