"""Every data source is one registry entry, and the schema says which keys each reads."""

from src.finetune.data.sources import SOURCES
from src.finetune.params import SOURCE_KEYS, DataParams


def test_every_source_the_schema_allows_is_registered_with_the_keys_it_reads():
    allowed = DataParams.model_fields["source"].annotation.__args__
    assert set(allowed) == set(SOURCES) == set(SOURCE_KEYS)
    for name, source in SOURCES.items():
        assert source.name == name and callable(source.fetch) and callable(source.prepare)


def test_every_data_key_is_read_by_some_source_and_names_a_field():
    read = {key for keys in SOURCE_KEYS.values() for key in keys}
    assert read == set(DataParams.model_fields) - {"source"}


def test_a_source_reports_only_the_keys_it_reads():
    data = DataParams(
        source="folder",
        url=None,
        archive=None,
        sha256=None,
        folder="photos",
        val_split=0.1,
        test_split=0.2,
        image_size=64,
        dedupe=False,
    )
    assert data.read_by_source() == {
        "source": "folder",
        "folder": "photos",
        "test_split": 0.2,
        "val_split": 0.1,
        "train_limit": None,
        "test_limit": None,
        "image_size": 64,
        "dedupe": False,
    }
