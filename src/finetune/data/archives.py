"""CIFAR-10 and CIFAR-100 from their official python archives: download, verify, read.

The archive's pickled batches are read straight out of the tar file (nothing is extracted)
with an unpickler that only rebuilds NumPy arrays, so a tampered archive cannot run code. The
archive is validated, not trusted: links, a member larger than the official ones, a batch of
the wrong type, labels that are not class indices and pixels outside 0-255 are each refused
with one line. TensorFlow is not imported here: the prepare stage stays quick to start.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import pickle
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from src.finetune.data.splits import Split
from src.finetune.errors import PipelineError, first_line
from src.finetune.files import atomic_path
from src.finetune.model.labels import is_class_name

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# A download gives up when no byte arrives for this long, or when it moves slower than
# STALLED_BYTES in STALL_WINDOW_S: a server that sends a byte every few seconds never ends.
DOWNLOAD_TIMEOUT_S = 15
STALL_WINDOW_S = 30
STALLED_BYTES = 64 * 1024


@dataclass(frozen=True)
class Archive:
    """An official python archive: where it is, what it must be, what it holds."""

    name: str
    url: str
    sha256: str
    size: int  # bytes of the official file; a download never writes more
    train_members: tuple[str, ...]
    test_member: str
    meta_member: str
    label_key: bytes
    names_key: bytes
    classes: int
    largest_member: int  # bytes of its largest member, with a little room

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train_members, self.test_member, self.meta_member)

    @property
    def filename(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name


CIFAR10 = Archive(
    name="CIFAR-10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    size=170_498_071,
    train_members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    test_member="cifar-10-batches-py/test_batch",
    meta_member="cifar-10-batches-py/batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    classes=10,
    largest_member=31_100_000,
)
CIFAR100 = Archive(
    name="CIFAR-100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    size=169_001_437,
    train_members=("cifar-100-python/train",),
    test_member="cifar-100-python/test",
    meta_member="cifar-100-python/meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    classes=100,
    largest_member=160_000_000,
)


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split
    class_names: tuple[str, ...]


# --- download and verify ------------------------------------------------------------------


def ensure_archive(path: Path, url: str, sha256: str, official: Archive) -> None:
    """Download the archive if it is missing, then check it against the expected digest."""
    if path.is_dir():
        raise PipelineError(
            f"data.archive: {path} is a directory; point it at the {official.name} .tar.gz file"
        )
    if path.exists() and not path.is_file():  # a device or a pipe would be read forever
        raise PipelineError(
            f"data.archive: {path} is not a regular file; point it at the {official.name} "
            ".tar.gz file"
        )
    if not path.exists():
        download(url, path, sha256, official)
    verify_sha256(path, sha256)


def download(url: str, path: Path, sha256: str, official: Archive) -> None:
    """Fetch ``url`` into ``path``: never more than the official size (with a margin for a
    mirror's own archive of the same data), never stalled forever, nothing left on failure."""
    try:
        parsed = urllib.parse.urlparse(url)
    except ValueError:  # an unclosed [IPv6] host
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https", "file"):
        raise PipelineError(
            f"data.url: {url[:200]!r} is not an http(s) or file URL; give the full address, "
            f"e.g. {official.url}"
        )
    local = Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "file" and local.exists() and not local.is_file():
        raise PipelineError(f"data.url: {url[:200]} is not a regular file; point it at the archive")
    limit = official.size + official.size // 10
    log.info("downloading %s -> %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > limit:
                raise PipelineError(_too_big(url, announced, official, path, sha256))
            with atomic_path(path) as partial:
                _copy_with_progress(response, partial, announced or official.size, limit, url)
                _check_download(partial, sha256, url)
    except (
        urllib.error.URLError,
        http.client.HTTPException,  # a bad port, a cut chunked stream, a server that is no HTTP
        TimeoutError,
        ConnectionError,
        ssl.SSLError,
        ValueError,
    ) as error:
        reason = first_line(getattr(error, "reason", None) or error)
        raise PipelineError(
            f"cannot download {url} ({reason}); without network, put the {official.name} python "
            f"archive at {path} (sha256 {sha256}) and run again"
        ) from None


def _copy_with_progress(response: Any, target: Path, total: int, limit: int, url: str) -> None:
    done, next_report = 0, 0.1
    window_start, window_bytes = time.monotonic(), 0
    with target.open("wb") as handle:
        # read1: whatever has arrived, so a trickling server is timed, not waited for
        for chunk in iter(lambda: response.read1(CHUNK), b""):
            handle.write(chunk)
            done += len(chunk)
            window_bytes += len(chunk)
            if done > limit:
                raise PipelineError(
                    f"{url} sent more than {limit / 1e6:.0f} MB, more than the official archive; "
                    "it was cut off and discarded: check data.url"
                )
            if time.monotonic() - window_start >= STALL_WINDOW_S:
                if window_bytes < STALLED_BYTES:
                    raise PipelineError(
                        f"the download from {url} stalled ({window_bytes} bytes in the last "
                        f"{STALL_WINDOW_S} s); it was discarded: try again later or another mirror"
                    )
                window_start, window_bytes = time.monotonic(), 0
            if done / total >= next_report:
                log.info("  %3.0f%% of %.0f MB", min(100, 100 * done / total), total / 1e6)
                next_report += 0.1


def _check_download(partial: Path, sha256: str, url: str) -> None:
    actual = sha256_of(partial)
    if actual != sha256:
        raise PipelineError(
            f"the file downloaded from {url} has sha256 {actual}, expected {sha256} "
            "(data.sha256); it was discarded, try again or check data.url"
        )


def _too_big(url: str, size: int, official: Archive, path: Path, sha256: str) -> str:
    return (
        f"{url} announces {size / 1e6:.0f} MB, far more than the {official.size / 1e6:.0f} MB "
        f"{official.name} archive; nothing was downloaded: check data.url, or put the archive "
        f"at {path} (sha256 {sha256})"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise PipelineError(
            f"{path} has sha256 {actual}, expected {expected} (data.sha256); the file was not "
            "used: delete it to download it again, or set data.sha256 if you meant this archive"
        )


# --- read -----------------------------------------------------------------------------------


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, and nothing more: another
    codec ('hex', nested) would let a few bytes of pickle grow into gigabytes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to encode with {str(encoding)[:20]!r}")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Allows only what the official batches contain: dicts, lists, bytes and NumPy arrays.

    ``_codecs.encode`` is how Python 3 writes bytes in the archive's protocol-2 pickles;
    only its latin-1 form is allowed.
    """

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_archive(path: Path, official: Archive) -> Dataset:
    """Read every batch of an archive in the official layout, whatever its batch sizes."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {member.name: member for member in tar.getmembers()}
            _check_members(path, members, official)
            train = _concat(
                [_read_batch(tar, members[n], official) for n in official.train_members]
            )
            test = _read_batch(tar, members[official.test_member], official)
            meta = _unpickle(tar, members[official.meta_member])
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise PipelineError(
            f"{path} is truncated or not a .tar.gz ({error}); delete it and run again"
        ) from None
    names = meta.get(official.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != official.classes:
        raise PipelineError(
            f"{path}: {official.meta_member} does not name the {official.classes} classes "
            f"(no {official.names_key.decode()} list of {official.classes}); use the official "
            f"{official.filename}"
        )
    class_names = _class_names(path, names, official)
    return Dataset(
        train=Split(train.images, train.labels, official.classes),
        test=test,
        class_names=class_names,
    )


def _check_members(path: Path, members: dict[str, tarfile.TarInfo], official: Archive) -> None:
    missing = [name for name in official.members if name not in members]
    if missing:
        raise PipelineError(
            f"{path} is not the {official.name} python archive: missing {', '.join(missing)}; "
            f"use {official.filename} from the official site"
        )
    for name in official.members:
        member = members[name]
        if not member.isfile():
            raise PipelineError(
                f"{path}: {name} is a link or a directory, not a file; the archive was tampered "
                f"with: use the official {official.filename}"
            )
        if member.size > official.largest_member:
            raise PipelineError(
                f"{path}: {name} is {member.size / 1e6:.0f} MB, larger than any member of the "
                f"official archive; it was not read: use the official {official.filename}"
            )


def _unpickle(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    handle = tar.extractfile(member)
    if handle is None:
        raise PipelineError(f"{member.name} in the archive is not a regular file")
    try:
        return _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(
            f"{member.name} in the archive is not a pickled batch ({error})"
        ) from None


def _read_batch(tar: tarfile.TarFile, member: tarfile.TarInfo, official: Archive) -> Split:
    name = member.name
    batch = _unpickle(tar, member)
    if not isinstance(batch, dict):
        raise PipelineError(f"{name}: a batch must be a dict, got {type(batch).__name__}")
    if b"data" not in batch or official.label_key not in batch:
        wanted = f"data and {official.label_key.decode()}"
        raise PipelineError(f"{name} in the archive lacks {wanted}; use the official archive")
    try:
        data = _pixels(name, batch[b"data"])
        labels = _labels(name, batch[official.label_key], official)
    except (ValueError, TypeError, OverflowError) as error:  # ragged, 0-d, beyond int64
        reason = first_line(error, 100)
        raise PipelineError(
            f"{name}: data or labels are not arrays of the official kind ({reason}); use the "
            f"official {official.filename}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise PipelineError(
            f"{name}: expected data of shape (N, 3072) and N labels, got {data.shape} "
            f"and {len(labels)} labels"
        )
    # The archive stores each image as 1024 red, then green, then blue bytes (channels first).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels, official.classes)


def _pixels(name: str, data: Any) -> np.ndarray:
    array = np.asarray(data) if isinstance(data, np.ndarray | list) else None
    if array is None or array.dtype.kind not in "ui":
        raise PipelineError(f"{name}: data must be an array of 0-255 pixel values")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise PipelineError(f"{name}: pixel values lie outside 0-255")
    return array.astype(np.uint8, copy=False)


def _labels(name: str, values: Any, official: Archive) -> np.ndarray:
    if not isinstance(values, list | np.ndarray) or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values
    ):
        raise PipelineError(f"{name}: labels must be whole numbers (class indices)")
    labels = np.asarray(values, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= official.classes):
        raise PipelineError(f"{name}: labels must lie in 0..{official.classes - 1}")
    return labels


def _concat(splits: list[Split]) -> Split:
    return Split(
        np.concatenate([s.images for s in splits]),
        np.concatenate([s.labels for s in splits]),
        splits[0].classes,
    )


def _class_names(path: Path, names: list, official: Archive) -> tuple[str, ...]:
    """The archive's class names: distinct, non-empty, printable text of sensible length."""
    try:
        texts = tuple(n.decode() if isinstance(n, bytes) else n for n in names)
    except UnicodeDecodeError:
        texts = ()
    if not texts or not all(map(is_class_name, texts)) or len(set(texts)) != len(texts):
        raise PipelineError(
            f"{path}: the {official.names_key.decode()} of {official.meta_member} are not "
            f"{official.classes} distinct, printable names; use the official {official.filename}"
        )
    return texts
