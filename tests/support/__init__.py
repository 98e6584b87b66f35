"""What the tests (and the benchmarks) share, one module per concern: params files and tiny
data (``params``), generated CIFAR archives (``sample``), scratch projects (``projects``),
real commands (``commands``), servers (``servers``), short training runs (``training``),
image files (``images``) and a real browser (``browser``). The fixtures built on them live in
``tests/conftest.py``."""
