"""One thin entry point per DVC stage; run as ``python -m src.stages.<stage>``."""
