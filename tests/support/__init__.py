"""What the tests share, one module per concern: params files and tiny data (``params``),
scratch git + DVC projects (``projects``), real commands (``commands``), servers
(``servers``), PostgreSQL (``postgres``), a real browser (``browser``), short training runs
(``training``), image files in every format (``images``), hand-built PyTorch checkpoints
(``checkpoints``), files that inflate or exhaust (``bombs``), the export tests' class names
(``exports``), a metrics.json as evaluate writes it (``results``), a recording tracker
backend (``tracking``), what a run builds once for all its workers (``shared``) and the
demo's clone with the README's sweep commands (``demo``). What the tests share with the
benchmarks (data sets, scratch copies of the project) is the top-level ``workbench``
package. The fixtures built on them live in ``tests/conftest.py`` (the demo's in
``tests/e2e/conftest.py``)."""
