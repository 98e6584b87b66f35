"""Tuning studies: the search space (``space``), the Optuna study and its trials (``study``),
the workspaces trials run in (``workspaces``), the training stage's pruning callback
(``pruning``) and what a study leaves behind (``results``)."""
