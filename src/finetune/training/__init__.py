"""How a phase trains: its plan (``plan``), the training core (``loop``) and what it uses:
optimizers, augmentation, input pipelines, caches of the frozen part, per-epoch backups,
devices; and the history files it writes (``history``)."""
