"""What the prepared splits hide: the same image twice (within a split, or leaking from
training into validation or test), and classes far apart in size.

Exact duplicates share the SHA-1 of their decoded pixels (at the prepared size). Near
duplicates share a perceptual hash (``imagehash.phash``: 64 bits from the image's low
frequencies, of its brightness) up to ``NEAR_BITS`` differing bits, and their mean colours
differ by at most ``COLOUR_STEPS`` of 255 in every channel: the same photo re-encoded, resized
or slightly brightened, not two flat images of different colours.

Duplicates are grouped, not listed in pairs: each image that copies an earlier one (in the
order train, val, test) is paired once, with the first image of its group. Memory and time
stay near linear in the images (``make bench-memory``): near duplicates are only looked for
among images that agree exactly on one of three parts of their hash (two differing bits
leave one part whole), and identical signatures are one candidate. ``reports/data_checks.json``
records the counts and the first few pairs.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from src.finetune.data.prepared import Rows
from src.finetune.data.splits import Split, imbalance
from src.finetune.numbers import Amount, Count

log = logging.getLogger(__name__)
NEAR_BITS = 2  # of 64: at most this many differ between near duplicates (0 = same hash)
COLOUR_STEPS = 12  # of 255: how far apart near duplicates' mean colours may be, per channel
SHOWN = 5  # pairs recorded per finding
SPLITS = ("train", "val", "test")
PARTS = (0, 22, 43, 64)  # the hash's bits in three parts: NEAR_BITS + 1 of them
HASH_BATCH = 256  # images decoded and hashed at a time


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
    """Exact, then near, duplicates within each split and between each two: each image that
    copies an earlier one paired with the first image of its group."""
    sizes = [len(splits[s].labels) for s in SPLITS]
    starts = np.cumsum([0, *sizes])
    digests, hashes, colours = zip(*(_signatures(splits[s].images) for s in SPLITS), strict=True)
    exact = _first_of_each([digest for part in digests for digest in part])
    near = _near_groups(np.concatenate(hashes), np.concatenate(colours), exact)
    found = {(kind, a, b): [] for kind in ("exact", "near") for i, a in enumerate(SPLITS)
             for b in SPLITS[i:]}  # fmt: skip
    split_of = np.repeat(np.arange(len(SPLITS)), sizes)
    for j in range(int(starts[-1])):
        kind, first = ("exact", exact[j]) if exact[j] != j else ("near", near[j])
        if first == j:
            continue
        a, b = split_of[first], split_of[j]
        found[(kind, SPLITS[a], SPLITS[b])].append((int(first - starts[a]), int(j - starts[b])))
    return [Pairs(kind, a, b, pairs) for (kind, a, b), pairs in found.items()]


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
    share = 100 * finding.pairs / max(size, 1)
    return (
        f"{finding.pairs} {finding.b} image(s) ({share:.1f}% of its {size}) are {what} copies "
        f"of {finding.a} images: {finding.b} accuracy is measured partly on images the model "
        f"has seen; e.g. {finding.examples[0][0]} = {finding.examples[0][1]}; set "
        "data.dedupe: true, or remove one of each pair"
    )


def _finding(kind: str, a: str, b: str, pairs: list[tuple[int, int]], name) -> Finding:
    examples = [(name(a, i), name(b, j)) for i, j in pairs[:SHOWN]]
    return Finding(kind=kind, a=a, b=b, pairs=len(pairs), examples=examples)


def _first_of_each(keys: list[bytes]) -> np.ndarray:
    """For each position, the first position with the same key."""
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(key, index) for index, key in enumerate(keys)], np.int64)


def _signatures(images: np.ndarray) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Each image's SHA-1 of its pixels, uint64 pHash and mean colour (0-255, per channel),
    in one read of the images, a batch at a time."""
    import imagehash
    from PIL import Image

    digests: list[bytes] = []
    hashes = np.zeros(len(images), np.uint64)
    colours = np.zeros((len(images), 3), np.float32)
    for start, batch in _in_batches(images):
        digests += [hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest() for image in batch]
        colours[start : start + len(batch)] = batch.reshape(len(batch), -1, batch.shape[-1]).mean(
            axis=1
        )[:, :3]
        for offset, image in enumerate(batch):
            bits = imagehash.phash(Image.fromarray(image.squeeze())).hash.flatten()
            hashes[start + offset] = np.packbits(bits).view(">u8")[0]
        if (start + len(batch)) % 20_480 < HASH_BATCH:
            log.info("  hashed %d of %d images", start + len(batch), len(images))
    return digests, hashes, colours


def _in_batches(images: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, batch)``, ``HASH_BATCH`` images at a time. A prepared split, memory-mapped,
    is read with positioned reads (``prepared.Rows``): the pages of a mapped file that a loop
    touches count as the process's memory, 3 KB an image at 32x32, 300 MB at 100,000."""
    rows = Rows.of(images)
    for start in range(0, len(images), HASH_BATCH):
        stop = min(start + HASH_BATCH, len(images))
        yield start, rows.read(np.arange(start, stop)) if rows else np.asarray(images[start:stop])


def _near_groups(hashes: np.ndarray, colours: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """For each image, the first image of its group of near duplicates (exact ones joined).

    Candidates share one of the hash's three parts; within a part's bucket, images whose
    hash and mean colour (rounded) are the same are one candidate, the others are compared.
    Union-find joins the pairs found; each group is named by its first image."""
    parent = exact.copy()

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    keys = np.rec.fromarrays([hashes, *np.round(colours / COLOUR_STEPS).astype(np.int32).T])
    _, first, alike = np.unique(keys, return_index=True, return_inverse=True)
    for index, same in enumerate(first[alike]):  # the same signature: one candidate
        if same != index:
            join(int(same), index)
    candidates = np.sort(first)
    for low, high in itertools.pairwise(PARTS):
        mask = np.uint64((1 << (high - low)) - 1)
        part = (hashes[candidates] >> np.uint64(low)) & mask
        order = np.argsort(part, kind="stable")
        bounds = np.flatnonzero(np.diff(part[order])) + 1
        for bucket in np.split(candidates[order], bounds):
            if len(bucket) > 1:
                _join_close(bucket, hashes, colours, join)
    return np.array([root(i) for i in range(len(parent))], np.int64)


def _join_close(bucket: np.ndarray, hashes: np.ndarray, colours: np.ndarray, join) -> None:
    """Join each pair of the bucket within NEAR_BITS bits and COLOUR_STEPS of colour, a row
    of the bucket at a time against the rows after it."""
    bits, colour = hashes[bucket], colours[bucket]
    for row in range(len(bucket) - 1):
        close = np.bitwise_count(bits[row + 1 :] ^ bits[row]) <= NEAR_BITS
        close &= (np.abs(colour[row + 1 :] - colour[row]) <= COLOUR_STEPS).all(axis=1)
        for other in np.flatnonzero(close):
            join(int(bucket[row]), int(bucket[row + 1 + other]))
