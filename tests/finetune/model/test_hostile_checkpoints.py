"""Checkpoints written to hurt the reader: each is one clear error, in bounded memory and
time, and leaves nothing behind that changes the next read. Then mutants of real and
hand-built checkpoints, every one of which must be read correctly or refused in one line."""

import io
import pickle
import pickletools
import signal
import time

import numpy as np
import pytest

from src.finetune.model.pretrained import imagenet_checkpoint
from src.finetune.model.torch_checkpoint import load_state_dict
from tests.support.bombs import peak_memory
from tests.support.checkpoints import (
    PROTO,
    deep_tuple,
    glob,
    item,
    ordered_dict,
    state_dict,
    storage,
    tensor,
    write_legacy,
    write_zip,
)
from tests.support.params import ROOT

FIXTURES = ROOT / "tests/fixtures/checkpoints"
TEN = {"0": np.arange(10, dtype=np.float32)}
REFUSED = (ValueError, TypeError, pickle.UnpicklingError)


# A storage whose type is the text 'FloatStorage', not the global torch.FloatStorage.
STORAGE_AS_TEXT = (
    (pickle.MARK + item("storage") + item("FloatStorage") + item("0") + item("cpu") + item(10))
    + pickle.TUPLE
    + pickle.BINPERSID
)


def one_tensor(**shape) -> bytes:
    return state_dict({"w": tensor(storage("0", 10), **shape)})


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        # 522 bytes asking for a billion elements of a 10-element storage, stride 0
        ({"size": (1000, 1000, 1000), "stride": (0, 0, 0)}, "expand to 1,000,000,000 elements"),
        # overlapping strides: every element read many times over
        ({"size": (3000, 3000), "stride": (1, 1)}, "reads element 5998 beyond its storage"),
        ({"size": (10, 200_000), "stride": (1, 0)}, "expand to 2,000,000 elements"),
        ({"size": (2**50,), "stride": (0,)}, "is 1125899906842624, not a count up to 2\\^40"),
        ({"size": (-1,), "stride": (1,)}, "is -1, not a count up to 2\\^40"),
        ({"size": (float("inf"),), "stride": (1,)}, "is float, not a count"),
        ({"size": "(4,)", "stride": (1,)}, "size is not a tuple"),
        ({"size": (1,) * 40, "stride": (1,) * 40}, "not a tuple of up to 16 counts"),
        ({"offset": 2**41}, "offset is 2199023255552, not a count up to 2\\^40"),
    ],
)
def test_a_tensor_cannot_expand_beyond_what_its_storage_holds(tmp_path, shape, message):
    path = write_zip(tmp_path / "bomb.pt", one_tensor(**shape), TEN)
    with peak_memory() as peak, pytest.raises(REFUSED, match=message):
        load_state_dict(path)
    assert peak.bytes < 50_000_000, f"{peak.bytes / 1e6:.0f} MB taken to refuse it"


def test_tensors_may_expand_no_further_than_the_model_holds(tmp_path):
    path = write_zip(tmp_path / "ok.pt", one_tensor(size=(10,), stride=(1,)), TEN)
    assert load_state_dict(path, max_elements=10)["w"].tolist() == list(range(10))
    with pytest.raises(ValueError, match="10 elements, more than the 9 they may"):
        load_state_dict(path, max_elements=9)


@pytest.mark.parametrize(
    ("pickled", "message"),
    [
        (state_dict({7: tensor(storage("0", 10))}), "a state-dict key is a int, not a string"),
        (state_dict({"x" * 2000: tensor(storage("0", 10))}), "key is 2000 characters long"),
        (state_dict({"w": tensor(STORAGE_AS_TEXT)}), "a storage's type is a str"),
        (state_dict({"w": tensor(storage("0", 10, fields=4))}), "not \\('storage', type"),
        (state_dict({"w": tensor(storage("0", 10, fields=7))}), "not \\('storage', type"),
        (state_dict({"w": tensor(storage("0", float("inf")))}), "element count is float"),
        (state_dict({"w": tensor(storage("0", 10, kind="UntypedStorage"))}), "refused global"),
        (state_dict({"w": tensor(storage(7, 10))}), "a storage's name is not a short string"),
        (state_dict({"w": item(1)}), "entries that are not tensors: \\['w'\\]"),
        (PROTO + item((1, 2)) + pickle.STOP, "holds a tuple, not a state dict"),
        (PROTO + pickle.EMPTY_SET + pickle.STOP, "a set in a checkpoint"),
        (PROTO + glob("builtins", "eval") + pickle.STOP, "refused global builtins.eval"),
        (PROTO + b"\x00\x01garbage", "damaged checkpoint|opcode"),
    ],
)
def test_what_a_state_dict_never_holds_is_one_line(tmp_path, pickled, message):
    path = write_zip(tmp_path / "odd.pt", pickled, TEN)
    with pytest.raises(REFUSED, match=message) as refused:
        load_state_dict(path)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


def test_a_key_that_is_a_deeply_shared_tuple_is_refused_at_once(tmp_path):
    """1.1 KB whose key would take 2**400 steps to hash or print."""
    pickled = PROTO + ordered_dict() + pickle.MARK + deep_tuple(400)
    pickled += tensor(storage("0", 10)) + pickle.SETITEMS + pickle.STOP
    path = write_zip(tmp_path / "deep.pt", pickled, TEN)
    started = time.monotonic()
    with pytest.raises(pickle.UnpicklingError, match="a state-dict key is a tuple"):
        load_state_dict(path)
    assert time.monotonic() - started < 2
    as_size = state_dict({"w": tensor(storage("0", 10), size=deep_tuple(400))})
    with pytest.raises(pickle.UnpicklingError, match="is tuple, not a count"):
        load_state_dict(write_zip(tmp_path / "deep_size.pt", as_size, TEN))


def test_the_reader_can_be_interrupted(tmp_path):
    """A read is pure Python: a signal stops it (the stage's SIGTERM handler runs)."""
    pickled = PROTO + pickle.MARK + item(0) * 3_000_000 + pickle.TUPLE + pickle.STOP
    path = write_zip(tmp_path / "long.pt", pickled, TEN)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            load_state_dict(path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_nothing_a_file_does_outlives_its_read(tmp_path):
    """BUILD on the shared FloatStorage marker would make every later float tensor double;
    on the OrderedDict class, change every later dict. Both are refused, and the next read
    is right."""
    on_storage_type = PROTO + glob("torch", "FloatStorage") + pickle.EMPTY_DICT
    on_storage_type += pickle.MARK + item("name") + item("DoubleStorage") + pickle.SETITEMS
    on_storage_type += pickle.BUILD + pickle.STOP
    on_class = PROTO + glob("collections", "OrderedDict") + pickle.NONE + pickle.EMPTY_DICT
    on_class += pickle.MARK + item("__setitem__") + item(0) + pickle.SETITEMS
    on_class += pickle.TUPLE2 + pickle.BUILD + pickle.STOP
    for name, pickled in (("type.pt", on_storage_type), ("class.pt", on_class)):
        with pytest.raises(pickle.UnpicklingError, match="refused to set the state"):
            load_state_dict(write_zip(tmp_path / name, pickled, TEN))
    good = load_state_dict(FIXTURES / "views_zip.pt")
    assert good["base"].dtype == np.float32 and good["base"][1, 0] == 6


def test_a_state_dicts_own_metadata_is_read_and_ignored(tmp_path):
    """torch.save pickles a state dict's ``_metadata`` with BUILD: that one is fine."""
    pickled = PROTO + ordered_dict({"w": tensor(storage("0", 10))})
    pickled += pickle.EMPTY_DICT + pickle.MARK + item("_metadata") + ordered_dict()
    pickled += pickle.SETITEMS + pickle.BUILD + pickle.STOP
    loaded = load_state_dict(write_zip(tmp_path / "meta.pt", pickled, TEN))
    assert list(loaded) == ["w"] and loaded["w"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("header", "message"),
    [([1, 2], "byte order"), ({"little_endian": False}, "byte order"), ("x", "byte order")],
)
def test_a_legacy_header_that_is_not_a_little_endian_dict_is_refused(tmp_path, header, message):
    path = write_legacy(tmp_path / "legacy.pt", one_tensor(), TEN, header=header)
    with pytest.raises(ValueError, match=message):
        load_state_dict(path)


HAND_BUILT = state_dict(
    {
        "a": tensor(storage("0", 10), size=(2, 3), stride=(3, 1)),
        "b": tensor(storage("0", 10), offset=4, size=(3, 2), stride=(1, 3)),
        "c": tensor(storage("1", 10), size=(10,), stride=(1,)),
    }
)
STORAGES = {"0": np.arange(10), "1": np.arange(10, 20)}


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_hand_built_checkpoints_read_back_exactly(tmp_path, writer):
    """The writers the fuzzing below mutates, checked against the reader first."""
    loaded = load_state_dict(writer(tmp_path / "hand.pt", HAND_BUILT, STORAGES))
    np.testing.assert_array_equal(loaded["a"], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(loaded["b"], np.arange(10)[4:].reshape(2, 3).T)
    np.testing.assert_array_equal(loaded["c"], np.arange(10, 20))


def mutants(data: bytes, count: int, seed: int, start: int = 0, end: int | None = None):
    """``count`` copies of ``data`` with one to four bytes changed, inserted or removed
    between ``start`` and ``end``."""
    rng = np.random.default_rng(seed)
    end = len(data) if end is None else end
    for _ in range(count):
        mutant = bytearray(data)
        for _ in range(rng.integers(1, 5)):
            at = int(rng.integers(start, min(end, len(mutant))))
            kind = rng.integers(3)
            if kind == 0:
                mutant[at] = int(rng.integers(256))
            elif kind == 1:
                mutant.insert(at, int(rng.integers(256)))
            else:
                del mutant[at]
        yield bytes(mutant)


def read_bounded(path):
    """Read ``path``; a refusal is fine; memory and time must stay small."""
    started = time.monotonic()
    with peak_memory() as peak:
        try:
            result = load_state_dict(path)
        except REFUSED as error:
            assert "\n" not in str(error), str(error)
            result = None
    assert peak.bytes < 400_000_000, f"{peak.bytes / 1e6:.0f} MB"
    assert time.monotonic() - started < 10
    return result


def test_mutants_of_hand_built_checkpoints_are_read_or_refused(tmp_path):
    legacy = write_legacy(tmp_path / "legacy.pt", HAND_BUILT, STORAGES).read_bytes()
    path = tmp_path / "mutant.pt"
    read = 0
    for mutant in mutants(legacy, 150, seed=0):
        path.write_bytes(mutant)
        read += read_bounded(path) is not None
    for mutant in mutants(HAND_BUILT, 150, seed=1):
        read += read_bounded(write_zip(path, mutant, STORAGES)) is not None
    assert read > 0, "some mutants (of the storages' bytes) still read"


def test_mutants_of_the_real_lite0_checkpoint_are_read_or_refused(tmp_path):
    """The checkpoint `make install` brings (the legacy format), its pickles mutated: its
    tensors' sizes, strides, offsets, storage names and types, keys and opcodes."""
    data = imagenet_checkpoint("lite0").read_bytes()
    stream = io.BytesIO(data)
    for _ in range(5):  # magic, version, header, the state dict, its storage keys
        for _ in pickletools.genops(stream):
            pass
    path = tmp_path / "mutant.pth"
    read = 0
    for mutant in mutants(data, 120, seed=2, end=stream.tell()):
        path.write_bytes(mutant)
        loaded = read_bounded(path)
        if loaded is not None:
            read += 1
            assert all(isinstance(v, np.ndarray) for v in loaded.values())
    assert read < 120, "the mutants change what is read"
