"""Reading one image file of any common format and mode as RGB pixels of one size."""

import os

import numpy as np
import pytest
from PIL import Image

from src.finetune.data import images
from src.finetune.data.images import UnreadableImage, files_under, is_image_name, read_image
from src.finetune.errors import PipelineError
from tests.support.images import IMAGE_KINDS, deep_folder, hostile_files, write_image


@pytest.mark.parametrize(("mode", "suffix"), IMAGE_KINDS)
def test_every_format_and_mode_becomes_rgb_of_the_stored_size(tmp_path, mode, suffix):
    path = write_image(tmp_path / f"x{suffix}", mode, (50, 30), shade=200)
    pixels = read_image(path, (32, 32))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert pixels.max() > 100, "the image's content survives the conversion"


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
    assert abs(int(read_image(path, (8, 8))[0, 0, 0]) - 127) <= 1


def test_transparency_is_laid_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert read_image(path, (8, 8))[0, 0].tolist() == [255, 255, 255]


def test_the_shorter_side_is_fitted_and_the_longer_cropped_to_the_centre(tmp_path):
    path = tmp_path / "wide.png"
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white square in the middle third
    Image.fromarray(wide).save(path)
    pixels = read_image(path, (10, 10))
    assert pixels.min() > 200, "only the centre square is kept, not stretched"


def test_gif_animations_give_their_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    red, _, blue = read_image(path, (8, 8))[0, 0]
    assert red > 200 and blue < 50


def test_phone_photos_are_turned_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    tall = np.zeros((20, 10, 3), np.uint8)
    tall[:10] = 255  # top half white
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    Image.fromarray(tall).save(path, exif=exif)
    pixels = read_image(path, (20, 10)).mean(axis=(1, 2))
    assert pixels[15] > 200 and pixels[5] < 50, "the white half is at the bottom once upright"


@pytest.mark.parametrize(
    "content",
    [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20],
    ids=["text", "truncated-png"],
)
def test_unreadable_files_raise_one_reason(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match="not a readable image"):
        read_image(path, (8, 8))


def test_a_decompression_bomb_is_never_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    path = tmp_path / "bomb.png"
    Image.new("L", (50, 50)).save(path)
    with pytest.raises(UnreadableImage, match="over the 100 allowed"):
        read_image(path, (8, 8))


def test_image_names():
    assert is_image_name(images.Path("a/B.JPEG")) and is_image_name(images.Path("x.webp"))
    assert not is_image_name(images.Path(".DS_Store")) and not is_image_name(images.Path("n.txt"))
    assert not is_image_name(images.Path("._photo.jpg")), "macOS resource forks are not images"


def test_whatever_a_decoder_raises_on_a_damaged_file_is_an_unreadable_image(tmp_path):
    files = hostile_files(tmp_path)
    formats = {path.name.split("-")[0] for path in files}
    assert {"png", "jpeg", "spider", "dds", "tiff", "webp", "gif"} <= formats, formats
    unreadable = 0
    for path in files:
        try:
            pixels = read_image(path, (8, 8))
        except UnreadableImage as problem:
            assert str(problem), "the reason is said"
            unreadable += 1
        else:
            assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    assert unreadable > len(files) / 4, "most damaged files are refused, not all read"


def test_a_named_pipe_or_a_folder_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opened for reading, it would wait for a writer forever
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        with pytest.raises(UnreadableImage, match="not a regular file"):
            read_image(tmp_path / name, (8, 8))
    with pytest.raises(UnreadableImage, match="No such file"):
        read_image(tmp_path / "absent.png", (8, 8))


def test_files_under_lists_files_and_links_not_the_folders_sorted(tmp_path):
    write_image(tmp_path / "b/deeper/2.png", "RGB", (4, 4), 1)
    write_image(tmp_path / "a.png", "RGB", (4, 4), 1)
    (tmp_path / "link").symlink_to(tmp_path / "b")
    found = [p.relative_to(tmp_path).as_posix() for p in files_under(tmp_path)]
    assert found == ["a.png", "b/deeper/2.png", "link"]


def test_a_folder_nested_far_deeper_than_recursion_goes_is_walked(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_DEPTH", 5000)
    with deep_folder(tmp_path / "deep", 1500) as root:  # Path.rglob: RecursionError
        (bottom,) = files_under(root)
    assert bottom.name == "x.png" and len(bottom.relative_to(tmp_path).parts) == 1502


def test_a_folder_nested_deeper_than_max_depth_is_one_line(tmp_path):
    with deep_folder(tmp_path / "deep", 2000) as root, pytest.raises(PipelineError) as raised:
        files_under(root)
    message = str(raised.value)
    assert "nested more than 64 deep" in message and "\n" not in message and len(message) < 300
