"""The library the pipeline's stages and tools share, one subpackage per kind of thing:

- ``data``: images and labels from every source, held out and prepared on disk;
- ``model``: the pre-trained backbones, the network built on them, checkpoints;
- ``training``: a phase's plan, the training core, its inputs, optimizers and backups;
- ``evaluation``: test-set scores and the metrics ``evaluate`` writes;
- ``report``: the figure and the written report;
- ``tracking``: the ``Tracker`` interface the stages log through, and its implementations.

Beside them: ``params`` (the schema of params.yaml), ``files`` (writing and reading the files
stages exchange), ``errors``, ``environment`` (repository, DVC, git) and ``entrypoint`` (how a
stage runs as a process). Importing any of them acts on nothing.
"""
