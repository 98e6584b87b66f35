"""Tuning studies: the search space (``space``), the Optuna study and its trials (``study``),
the training stage's pruning callback (``pruning``) and what a study leaves behind
(``results``); trials run in workspaces of their own (``src/finetune/workspaces.py``)."""
