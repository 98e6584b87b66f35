"""PyTorch state dicts read without PyTorch: exactly what PyTorch wrote, or refused."""

import pickle
import zipfile

import numpy as np
import pytest

from src.finetune.model.torch_checkpoint import load_state_dict
from tests.support.params import ROOT

FIXTURES = ROOT / "tests/fixtures/checkpoints"


def expected() -> dict[str, np.ndarray]:
    """What ``views_*.pt`` hold (see tests/fixtures/checkpoints/README.md), by NumPy."""
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    bf16 = np.linspace(-1, 3, 6, dtype=np.float32)
    bf16 = (bf16.view(np.uint32) + 0x7FFF + ((bf16.view(np.uint32) >> 16) & 1)) >> 16 << 16
    return {
        "base": base,
        "transposed": base.T,
        "sliced": base[1:, 2:5],
        "flat_offset": base.reshape(-1)[5:17],
        "stepped": base[:, ::2],
        "expanded": np.broadcast_to(np.arange(3, dtype=np.float32), (4, 3)),
        "scalar": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "half": np.linspace(-2, 2, 5).astype(np.float16),
        "bf16": bf16.astype(np.uint32).view(np.float32),
        "int32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3).T,
        "uint8": np.arange(250, 256, dtype=np.uint8),
        "boolean": np.array([True, False, True]),
        "param": np.ones((2, 2), dtype=np.float32),
    }


@pytest.mark.parametrize("name", ["views_legacy.pt", "views_zip.pt"])
def test_views_offsets_and_shared_storages_are_rebuilt_exactly(name):
    loaded = load_state_dict(FIXTURES / name)
    wanted = expected()
    assert list(loaded) == list(wanted)
    for key, value in wanted.items():
        assert loaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
        assert loaded[key].flags.writeable, key
    assert not np.shares_memory(loaded["base"], loaded["transposed"]), "views come back as copies"


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("bad_global_legacy.pt", pickle.UnpicklingError, "refused global __builtin__.print"),
        ("bad_global_zip.pt", pickle.UnpicklingError, "refused global __builtin__.print"),
        ("bad_truncated_legacy.pt", ValueError, "declares .* elements but the file holds"),
        ("bad_cut_legacy.pt", ValueError, "storage|declares"),
        ("bad_numel_zip.pt", ValueError, "declares 100 elements but the file holds 40 bytes"),
        ("bad_stride_zip.pt", ValueError, "reads element 11 beyond its storage of 10"),
        ("bad_offset_zip.pt", ValueError, "reads element 10 beyond its storage of 10"),
    ],
)
def test_hostile_or_damaged_checkpoints_are_refused(name, error, message, capsys):
    with pytest.raises(error, match=message):
        load_state_dict(FIXTURES / name)
    assert "this must never run" not in capsys.readouterr().out


def test_a_zip_member_that_inflates_beyond_the_file_is_refused_before_it_is_read(tmp_path):
    bomb = tmp_path / "bomb.pt"
    with (
        zipfile.ZipFile(FIXTURES / "views_zip.pt") as original,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as copy,
    ):
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("data.pkl"):
                data += b"\0" * 5_000_000  # compresses to little, inflates past the file
            copy.writestr(info.filename, data)
    with pytest.raises(ValueError, match=r"data.pkl declares \d+ bytes, more than the file"):
        load_state_dict(bomb)


def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(TypeError, match="holds a list, not a state dict"):
        load_state_dict(path)
