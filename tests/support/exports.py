"""What the export tests share: the class names of their tiny model."""

NAMES = ("cat", "dog", "bird")
