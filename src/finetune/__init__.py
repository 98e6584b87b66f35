"""The library the pipeline's stages and tools share, one subpackage per kind of thing:

- ``data``: images and labels from every source, held out, prepared on disk and checked;
- ``model``: the backbones, the network built on them, where training cuts it, checkpoints;
- ``training``: a phase's plan, the training core, its inputs, optimizers, backups and the
  learning-rate range test;
- ``evaluation``: test-set scores, the classical reference and the metrics ``evaluate``
  writes;
- ``export``: the fine-tuned model in other formats, each checked in its own runtime;
- ``report``: the figures, the written report and the model card;
- ``tracking``: the ``Tracker`` interfaces the stages and tools log through, and their
  implementations;
- ``tuning``: a tuning study's search space, study, pruners and trials.

Beside them: ``params`` (the schema of params.yaml), ``files`` (writing and reading the files
stages exchange), ``numbers`` (the kinds of number in them), ``errors``, ``environment``
(repository, DVC, git), ``entrypoint`` (how a stage runs as a process), ``experiments`` (an
execution saved as a DVC experiment) and ``workspaces`` (a tool's own clone of the
repository). docs/architecture.md draws how they depend on each other. Importing any of them
acts on nothing.
"""
