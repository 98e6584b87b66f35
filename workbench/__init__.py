"""What the tests and the benchmarks share: the image sets they run the pipeline on (real
Fashion-MNIST photos, generated archives in the CIFAR layout) and scratch copies of the
project to run it in. Neither the pipeline nor its tools import it."""
