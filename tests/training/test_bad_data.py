"""Bad training data stops a run before its first step, with every problem named at once."""

import pytest

from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan
from tests.helpers import TINY_GAN, save_image_folder, save_tiny_score

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("score"))


def run(tmp_path, folder, score, *flags):
    argv = [*TINY_GAN, "--train_data_dir", folder, "--score", score, "--output_dir", str(tmp_path / "run")]
    return train_gan(parse_gan_args([*argv, "--checkpointing_steps", "1", *flags]))


def test_corrupt_images_are_all_reported_before_training(tmp_path, score):
    folder = save_image_folder(tmp_path / "images", images_per_class=4)
    (tmp_path / "images" / "a" / "1.png").write_bytes(b"not a png")
    truncated = (tmp_path / "images" / "b" / "2.png").read_bytes()
    (tmp_path / "images" / "b" / "2.png").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(ValueError, match=r"2 of 8 images cannot be used") as error:
        run(tmp_path, folder, score)
    assert "a/1.png" in str(error.value) and "b/2.png" in str(error.value)
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # no step ran


def test_fewer_images_than_one_batch_are_refused(tmp_path, score):
    folder = save_image_folder(tmp_path / "images", images_per_class=1)  # 2 images, batches of 4
    with pytest.raises(ValueError, match="2 images but --train_batch_size is 4: lower --train_batch_size"):
        run(tmp_path, folder, score)
