"""The official CIFAR archives: download, verify and read, validated rather than trusted."""

import io
import os
import pickle
import tarfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from src.finetune.data import archives
from src.finetune.data.archives import CIFAR10, CIFAR100, ensure_archive, read_archive
from src.finetune.errors import PipelineError
from tests.support.params import TINY_TEST, TINY_TRAIN
from tests.support.servers import LocalServer
from workbench.archives import CLASS_NAMES, write_archive


def write_members(path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            if name in links:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if name not in links else None)


def official_members(batch: object, meta: object | None = None) -> dict[str, bytes]:
    meta = meta or {b"label_names": [n.encode() for n in CLASS_NAMES]}
    payload = pickle.dumps(batch, protocol=2)
    members = dict.fromkeys(CIFAR10.train_members, payload)
    return members | {CIFAR10.test_member: payload, CIFAR10.meta_member: pickle.dumps(meta)}


def test_reads_every_batch_of_a_small_archive(sample_archive):
    cifar = read_archive(sample_archive[0], CIFAR10)
    assert cifar.train.images.shape == (TINY_TRAIN, 32, 32, 3)
    assert cifar.test.images.shape == (TINY_TEST, 32, 32, 3)
    assert cifar.train.images.dtype == np.uint8 and cifar.train.labels.dtype == np.int64
    assert np.bincount(cifar.train.labels).tolist() == [TINY_TRAIN // 10] * 10
    assert cifar.class_names == CLASS_NAMES and cifar.train.classes == 10


def test_reads_an_archive_in_the_cifar100_layout(tmp_path):
    path = tmp_path / "cifar-100-python.tar.gz"
    write_archive(path, 300, 100, seed=0, layout=CIFAR100)
    cifar = read_archive(path, CIFAR100)
    assert cifar.train.images.shape == (300, 32, 32, 3) and len(cifar.test) == 100
    assert len(cifar.class_names) == 100 and cifar.class_names[7] == "class_07"
    assert set(cifar.train.labels) == set(range(100)) and cifar.train.classes == 100
    with pytest.raises(PipelineError, match=r"is not the CIFAR-10 python archive"):
        read_archive(path, CIFAR10)


def test_channels_first_rows_become_height_width_channel_images(tmp_path):
    red_only = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    red_only[:, 0] = 255
    red_only[1, 2, 5, 7] = 9  # blue channel, row 5, column 7
    archive = tmp_path / "a.tar.gz"
    write_members(archive, official_members({b"data": red_only.reshape(2, -1), b"labels": [3, 4]}))
    images = read_archive(archive, CIFAR10).test.images
    assert (images[..., 0] == 255).all() and images[0, ..., 1:].max() == 0
    assert images[1, 5, 7, 2] == 9


GOOD = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
# _codecs.encode('a', 'hex'): nested, a few hundred bytes of pickle grow into gigabytes.
HEX_BOMB = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00hex\x86R."


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"cifar-10-batches-py/data_batch_1": b"x"}, "missing cifar-10-batches-py/data_batch_2"),
        (official_members({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
         r"expected data of shape \(N, 3072\)"),
        (official_members(GOOD, meta={b"num_vis": 3072}), "does not name the 10 classes"),
        (official_members(GOOD, meta=["not", "a", "dict"]), "does not name the 10 classes"),
        (official_members([1, 2, 3]), "a batch must be a dict, got list"),
        (official_members({b"data": GOOD[b"data"]}), "lacks data and labels"),
        (official_members({**GOOD, b"labels": ["cat", "dog"]}), "labels must be whole numbers"),
        (official_members({**GOOD, b"labels": [0.5, 1.0]}), "labels must be whole numbers"),
        (official_members({**GOOD, b"labels": [0, 10]}), r"labels must lie in 0\.\.9"),
        (official_members({**GOOD, b"data": np.full((2, 3072), 300, np.int64)}),
         "pixel values lie outside 0-255"),
        (official_members({**GOOD, b"data": np.zeros((2, 3072), np.float32)}),
         "data must be an array of 0-255 pixel values"),
        (official_members({**GOOD, b"data": [[1, 2], [3]]}), "are not arrays of the official"),
        (official_members({**GOOD, b"labels": np.array(3)}), "are not arrays of the official"),
        (official_members({**GOOD, b"labels": [2**70, 0]}), "are not arrays of the official"),
        (official_members(GOOD, meta={b"label_names": [b"\xff\xfe"] * 10}),
         "are not 10 distinct, printable names"),
        (official_members(GOOD, meta={b"label_names": [b"cat"] * 10}),
         "are not 10 distinct, printable names"),
        (dict.fromkeys(CIFAR10.members, HEX_BOMB), "refusing to encode with 'hex'"),
    ],
    ids=[
        "missing-members", "wrong-shape", "meta-without-label-names", "meta-not-a-dict",
        "batch-not-a-dict", "batch-without-labels", "string-labels", "float-labels",
        "labels-out-of-range", "pixels-over-255", "float-pixels", "ragged-data",
        "labels-of-no-length", "labels-beyond-int64", "names-not-utf8", "names-repeated",
        "codec-bomb",
    ],
)  # fmt: skip
def test_a_damaged_archive_is_one_line_naming_what_is_wrong(tmp_path, members, expected):
    archive = tmp_path / "a.tar.gz"
    write_members(archive, members)
    with pytest.raises(PipelineError, match=expected) as caught:
        read_archive(archive, CIFAR10)
    assert "\n" not in str(caught.value)


def test_links_in_the_archive_are_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    members = official_members(GOOD)
    write_members(archive, members, links=(CIFAR10.test_member,))
    with pytest.raises(PipelineError, match=r"test_batch is a link or a directory"):
        read_archive(archive, CIFAR10)


def test_a_member_larger_than_the_official_ones_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "CIFAR10", CIFAR10)
    small = archives.Archive(**{**CIFAR10.__dict__, "largest_member": 1000})
    archive = tmp_path / "a.tar.gz"
    write_members(archive, official_members(GOOD))
    read = []
    monkeypatch.setattr(archives, "_unpickle", lambda *a: read.append(a))
    with pytest.raises(PipelineError, match=r"larger than any member of the official archive"):
        read_archive(archive, small)
    assert read == []


def test_truncated_archive_is_reported(sample_archive, tmp_path):
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(sample_archive[0].read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"truncated or not a \.tar\.gz"):
        read_archive(truncated, CIFAR10)


def test_pickles_that_would_run_code_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    archive = tmp_path / "a.tar.gz"
    write_members(archive, official_members({b"data": Exploit(), b"labels": []}))
    with pytest.raises(PipelineError, match=r"refusing to load (__builtin__|builtins)\.print"):
        read_archive(archive, CIFAR10)


def test_existing_archive_with_the_right_checksum_is_used_without_network(
    sample_archive, monkeypatch
):
    path, sha = sample_archive
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    verified = []

    def no_download(*args):
        raise AssertionError("an archive that is there is not downloaded again")

    monkeypatch.setattr(archives, "download", no_download)
    monkeypatch.setattr(archives, "verify_sha256", lambda *args: verified.append(args))
    ensure_archive(path, "http://127.0.0.1:9/unreachable", sha, CIFAR10)
    assert verified == [(path, sha)], "checked against the digest given"
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_checksum_mismatch_stops_and_keeps_the_file_untouched(sample_archive, tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(sample_archive[0].read_bytes())
    with pytest.raises(
        PipelineError, match=r"expected 0{64} \(data\.sha256\); the file was not used"
    ):
        ensure_archive(path, "http://127.0.0.1:9/x", "0" * 64, CIFAR10)
    assert path.read_bytes() == sample_archive[0].read_bytes()


def test_an_archive_path_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"data.archive: .* is a directory"):
        ensure_archive(tmp_path, "http://127.0.0.1:9/x", "0" * 64, CIFAR10)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_an_archive_path_that_is_no_regular_file_is_one_line(tmp_path, special):
    path = Path(special) if special.startswith("/") else tmp_path / special
    if special == "fifo":
        os.mkfifo(path)
    with pytest.raises(PipelineError, match=r"data.archive: .* is not a regular file"):
        ensure_archive(path, "http://127.0.0.1:9/x", "0" * 64, CIFAR10)


def test_a_file_url_of_a_pipe_is_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PipelineError, match=r"data.url: .* is not a regular file"):
        ensure_archive(tmp_path / "c.tar.gz", fifo.as_uri(), "a" * 64, CIFAR10)


@pytest.mark.parametrize("url", ["http://localhost:50O0/c.tar.gz", "http://localhost:9 /c.tar.gz"])
def test_a_url_http_cannot_use_is_one_line(tmp_path, url):
    with pytest.raises(PipelineError, match=r"cannot download .*; without network, put"):
        ensure_archive(tmp_path / "c.tar.gz", url, "a" * 64, CIFAR10)
    assert list(tmp_path.iterdir()) == []


def test_a_url_that_does_not_parse_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"data.url: 'http://\[::1' is not an http"):
        ensure_archive(tmp_path / "c.tar.gz", "http://[::1", "a" * 64, CIFAR10)


def test_missing_archive_is_downloaded_and_verified(sample_archive, tmp_path):
    source, sha = sample_archive
    target = tmp_path / "raw" / "cifar.tar.gz"
    ensure_archive(target, source.as_uri(), sha, CIFAR10)
    assert target.read_bytes() == source.read_bytes()


def test_download_with_the_wrong_checksum_is_discarded(sample_archive, tmp_path):
    target = tmp_path / "cifar.tar.gz"
    with pytest.raises(PipelineError, match=r"it was discarded"):
        ensure_archive(target, sample_archive[0].as_uri(), "f" * 64, CIFAR10)
    assert list(tmp_path.iterdir()) == []


def test_a_url_without_a_scheme_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"data.url: 'www.example.com/c.tar.gz' is not an http"):
        ensure_archive(tmp_path / "c.tar.gz", "www.example.com/c.tar.gz", "a" * 64, CIFAR10)


def test_offline_fails_fast_saying_which_file_to_put_where(tmp_path):
    target = tmp_path / "raw" / "cifar.tar.gz"
    started = time.monotonic()
    with pytest.raises(PipelineError) as caught:
        ensure_archive(target, "http://127.0.0.1:9/cifar-10-python.tar.gz", "a" * 64, CIFAR10)
    assert time.monotonic() - started < 10
    assert f"put the CIFAR-10 python archive at {target} (sha256 {'a' * 64})" in str(caught.value)
    assert not target.exists()


class Endless(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, *args):
        pass


class Trickle(Endless):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass


def test_a_server_that_streams_without_end_is_cut_off_at_the_official_size(tmp_path, monkeypatch):
    small = archives.Archive(**{**CIFAR10.__dict__, "size": 5_000_000})
    server = LocalServer(Endless)
    target = tmp_path / "raw" / "cifar.tar.gz"
    try:
        with pytest.raises(
            PipelineError, match=r"sent more than 6 MB, .* it was cut off and discarded"
        ):
            ensure_archive(target, server.url, "a" * 64, small)
    finally:
        server.close()
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_stalled_download_is_given_up_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "STALL_WINDOW_S", 2)
    server = LocalServer(Trickle)
    target = tmp_path / "raw" / "cifar.tar.gz"
    started = time.monotonic()
    try:
        with pytest.raises(PipelineError, match=r"stalled .* it was discarded"):
            ensure_archive(target, server.url, "a" * 64, CIFAR10)
    finally:
        server.close()
    assert time.monotonic() - started < 15
    assert list(target.parent.iterdir()) == []


def test_sample_archive_is_deterministic(tmp_path):
    first = write_archive(tmp_path / "a.tar.gz", 50, 20, seed=3)
    second = write_archive(tmp_path / "b.tar.gz", 50, 20, seed=3)
    assert first == second
    assert write_archive(tmp_path / "c.tar.gz", 50, 20, seed=4) != first
