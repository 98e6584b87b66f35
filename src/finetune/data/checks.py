"""What the prepared splits hide: the same image twice (within a split, or leaking from
training into validation or test), and classes far apart in size.

Exact duplicates share the SHA-1 of their decoded pixels (at the prepared size). Near
duplicates share a perceptual hash (``imagehash.phash``: 64 bits from the image's low
frequencies) up to ``NEAR_BITS`` differing bits: the same photo re-encoded, resized, or
slightly brightened. ``reports/data_checks.json`` records the counts and the first few pairs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from src.finetune.data.splits import Split, imbalance
from src.finetune.numbers import Amount, Count

log = logging.getLogger(__name__)
NEAR_BITS = 2  # of 64: at most this many differ between near duplicates (0 = same hash)
SHOWN = 5  # pairs recorded per finding
SPLITS = ("train", "val", "test")
CHUNK = 512  # rows of the pairwise hash comparison at a time


class Finding(BaseModel):
    """Duplicates of one kind between two splits (or within one: ``a == b``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # exact | near
    a: str
    b: str
    pairs: Count
    examples: list[tuple[str, str]]


class DataChecks(BaseModel):
    """``reports/data_checks.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: dict[str, Count]
    per_class: dict[str, dict[str, Count]]  # split -> class -> images
    imbalance_ratio: Amount  # the largest class over the smallest (at least 1 image)
    duplicates: list[Finding]
    removed: dict[str, Count] = {}  # by data.dedupe, per split
    warnings: list[str]


@dataclass(frozen=True)
class Pairs:
    """Every pair of duplicates of one kind between two splits (``a == b``: within one)."""

    kind: str
    a: str
    b: str
    pairs: list[tuple[int, int]]


def find_duplicates(splits: Mapping[str, Split]) -> list[Pairs]:
    """Exact, then near, duplicate pairs within each split and between each two."""
    exact = {s: _exact_hashes(splits[s].images) for s in SPLITS}
    near = {s: _perceptual_hashes(splits[s].images) for s in SPLITS}
    found = []
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i:]:
            same = _equal_pairs(exact[a], exact[b], a == b)
            found.append(Pairs("exact", a, b, same))
            close = _close_pairs(near[a], near[b], a == b) - set(same)
            found.append(Pairs("near", a, b, sorted(close)))
    return found


def to_remove(found: list[Pairs]) -> dict[str, set[int]]:
    """What ``data.dedupe`` drops: the later image of each pair, so training keeps its copy
    and validation and test lose theirs (within a split, every copy after the first)."""
    drop: dict[str, set[int]] = {s: set() for s in SPLITS}
    for pairs in found:
        drop[pairs.b].update(j for _, j in pairs.pairs)
    return drop


def check_splits(
    splits: Mapping[str, Split],
    class_names: tuple[str, ...],
    names: Mapping[str, list[str]] | None = None,
    removed: Mapping[str, int] | None = None,
    found: list[Pairs] | None = None,
) -> DataChecks:
    """Every check on the prepared splits; ``names`` gives each image's file (else its index),
    ``removed`` what ``data.dedupe`` took out before."""

    def name(split: str, index: int) -> str:
        return names[split][index] if names else f"{split} #{index}"

    found = find_duplicates(splits) if found is None else found
    findings = [_finding(f.kind, f.a, f.b, f.pairs, name) for f in found]
    counts = {
        s: dict(zip(class_names, np.bincount(splits[s].labels, minlength=len(class_names)).tolist(),
                    strict=True))
        for s in SPLITS
    }  # fmt: skip
    train = np.array(list(counts["train"].values()))
    warnings = [w for w in (imbalance(splits["train"].labels, class_names),) if w]
    warnings += [_leak_warning(f, len(splits[f.b].labels)) for f in findings
                 if f.pairs and f.a != f.b]  # fmt: skip
    return DataChecks(
        images={s: len(splits[s].labels) for s in SPLITS},
        per_class=counts,
        imbalance_ratio=round(float(train.max() / max(train.min(), 1)), 3),
        duplicates=[f for f in findings if f.pairs],
        removed=dict(removed or {}),
        warnings=warnings,
    )


def _leak_warning(finding: Finding, size: int) -> str:
    """A duplicate across splits: the later split's numbers are measured on seen images."""
    what = "identical" if finding.kind == "exact" else "near-identical"
    share = 100 * min(finding.pairs, size) / max(size, 1)
    return (
        f"{finding.pairs} {what} image pair(s) between {finding.a} and {finding.b} (up to "
        f"{share:.1f}% of its {size} images): {finding.b} accuracy is measured partly on "
        f"images the model has seen; e.g. {finding.examples[0][0]} = "
        f"{finding.examples[0][1]}; set data.dedupe: true, or remove one of each pair"
    )


def _finding(kind: str, a: str, b: str, pairs: list[tuple[int, int]], name) -> Finding:
    examples = [(name(a, i), name(b, j)) for i, j in pairs[:SHOWN]]
    return Finding(kind=kind, a=a, b=b, pairs=len(pairs), examples=examples)


def _exact_hashes(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest() for image in images]


def _equal_pairs(a: list[bytes], b: list[bytes], same: bool) -> list[tuple[int, int]]:
    """(i, j) with a[i] == b[j]; within one split, each later copy paired with the first."""
    first: dict[bytes, int] = {}
    pairs = []
    if same:
        for j, digest in enumerate(b):
            if digest in first:
                pairs.append((first[digest], j))
            else:
                first[digest] = j
        return pairs
    for i, digest in enumerate(a):
        first.setdefault(digest, i)
    return [(first[d], j) for j, d in enumerate(b) if d in first]


def _perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """One uint64 pHash per image."""
    import imagehash
    from PIL import Image

    hashes = np.zeros(len(images), np.uint64)
    for index, image in enumerate(images):
        bits = imagehash.phash(Image.fromarray(np.asarray(image).squeeze())).hash.flatten()
        hashes[index] = np.packbits(bits).view(">u8")[0]
        if (index + 1) % 20_000 == 0:
            log.info("  hashed %d of %d images", index + 1, len(images))
    return hashes


def _close_pairs(a: np.ndarray, b: np.ndarray, same: bool) -> set[tuple[int, int]]:
    """(i, j) whose hashes differ in at most ``NEAR_BITS`` bits (i < j within one split)."""
    pairs = set()
    for start in range(0, len(a), CHUNK):
        block = a[start : start + CHUNK, None] ^ b[None, :]
        rows, columns = np.nonzero(np.bitwise_count(block) <= NEAR_BITS)
        for i, j in zip(rows + start, columns, strict=True):
            if not same or i < j:
                pairs.add((int(i), int(j)))
    return pairs
