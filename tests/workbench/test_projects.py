"""The scratch projects end-to-end tests and benchmarks run in."""

from workbench.projects import copy_files


def test_copy_files_copies_files_and_folders_without_bytecode(tmp_path):
    source, target = tmp_path / "project", tmp_path / "copy"
    (source / "src/__pycache__").mkdir(parents=True)
    (source / "src/module.py").write_text("x = 1\n")
    (source / "src/__pycache__/module.pyc").write_bytes(b"\0")
    (source / ".dvc").mkdir()
    (source / ".dvc/config").write_text("[core]\n")
    copy_files(["src", ".dvc/config"], source, target)
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert copied == [".dvc/config", "src/module.py"]
