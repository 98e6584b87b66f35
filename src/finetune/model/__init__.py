"""The network: the pre-trained backbones (``backbones``), the model built on them and what
trains in each phase (``network``), and checkpoints between stages (``checkpoints``)."""
