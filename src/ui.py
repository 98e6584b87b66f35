"""The MLflow UI on the local store, opened on the comparison runs.

    make ui        # python -m src.ui [--port 5000]

Prints the link to the experiment's comparison runs (one per pipeline execution), their
headline metrics and the params sweeps change as columns, then runs `mlflow ui` on 127.0.0.1
with one worker process, enough on a small machine. A store that does not open, a port out of
range or taken by another server is one line and no link. The experiment is a model-training one,
so MLflow 3 opens its runs, not its GenAI view.
"""

from __future__ import annotations

import argparse
import shutil
import socket

from src.finetune import environment
from src.finetune.entrypoint import run_process
from src.finetune.errors import PipelineError
from src.finetune.tracking.mlflow.store import (
    Store,
    open_store,
    store_errors_as_one_line,
    tracking_uri,
)
from src.finetune.tracking.mlflow.ui import (
    comparison_runs_link,
    experiment_to_open,
    serve,
    share_comparison_view,
)

NAME = "ui"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=port_number, default=5000, help="1-65535 (default 5000)")
    parser.add_argument(
        "--experiment",
        help="the MLflow experiment to open (default: params.yaml's, or if it has no runs yet "
        "the one with the latest execution: the demo's after `make demo`)",
    )
    args = parser.parse_args(argv)
    # The UI and its server stop when what started them dies, however (a killed `make ui`,
    # its shell, a closed terminal): nothing is left holding the port.
    environment.die_with_parent()
    uri = tracking_uri()
    if Store(uri).database is None:
        raise PipelineError(
            f"MLFLOW_TRACKING_URI is {uri}: open that server's own UI, or unset it for the "
            "local store"
        )
    with store_errors_as_one_line(uri), open_store(uri) as client:
        experiment_id = experiment_to_open(client, args.experiment)
        share_comparison_view(client, experiment_id)
    mlflow = shutil.which("mlflow")
    if mlflow is None:
        raise PipelineError("mlflow not found; run `make install`, then `make ui`")
    claim_port(args.port)
    base = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI: {comparison_runs_link(base, experiment_id)}", flush=True)
    print("(one row per pipeline execution; Ctrl-C stops the UI)", flush=True)
    serve(mlflow, uri, args.port)


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def claim_port(port: int) -> None:
    """Refuse a port something else listens on before printing a link to it: the link would
    open that other server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except PermissionError as error:
            why = " (ports below 1024 need root)" if port < 1024 else ""
            raise PipelineError(
                f"port {port} on 127.0.0.1 is refused to this user: {error.strerror}{why}; "
                "choose another: make ui ARGS='--port 5001'"
            ) from None
        except OSError as error:
            raise PipelineError(
                f"port {port} on 127.0.0.1 is taken ({error.strerror}); stop what listens "
                "there, or choose another: make ui ARGS='--port 5001'"
            ) from None


if __name__ == "__main__":
    run_process(NAME, main)
