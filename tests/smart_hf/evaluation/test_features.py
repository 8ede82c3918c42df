"""Feature extractors: the shipped digits classifier, a tiny random DINOv2, the optional Inception-v3."""

import sys
import types

import huggingface_hub
import pytest
import torch

from smart_hf.evaluation import (
    DigitsFeatureExtractor,
    Dinov2FeatureExtractor,
    InceptionFeatureExtractor,
    compute_features,
    compute_statistics,
    load_digits_classifier,
)
from smart_hf.evaluation.train_digits_classifier import holdout_split, load_digits_tensors


@pytest.fixture(scope="module")
def digits():
    return load_digits_tensors()


@pytest.fixture(scope="module")
def digits_extractor():
    return DigitsFeatureExtractor()


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    """A randomly initialised DINOv2 (1 layer, width 32) saved to a local folder, as offline tests need."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2)
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    Dinov2Model(config).save_pretrained(folder)
    return folder


def test_shipped_digits_classifier_accuracy(digits):
    """The README's held-out accuracy (98.9%) of the shipped weights, on the held-out split."""
    images, labels = digits
    _, heldout = holdout_split(labels)
    extractor = DigitsFeatureExtractor(load_digits_classifier())
    accuracy = (extractor.predict(images[heldout]) == labels[heldout]).double().mean().item()
    assert accuracy == pytest.approx(356 / 360, abs=1e-9)


def test_digits_features(digits, digits_extractor):
    images, _ = digits
    features = digits_extractor.extract(images[:10])
    assert features.shape == (10, digits_extractor.feature_dim) == (10, 64)
    assert features.dtype == torch.float32
    # An RGB image with equal channels is the grayscale image.
    torch.testing.assert_close(digits_extractor.extract(images[:10].expand(-1, 3, -1, -1)), features)
    # No dead units: the feature covariance of the digits has full rank.
    all_features = digits_extractor.extract(images).double()
    assert torch.linalg.matrix_rank(torch.cov(all_features.T)) == 64


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.full((2, 1, 8, 8), 255.0), r"must be in \[−1, 1\]"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN or inf"),
        (torch.zeros(1, 8, 8), "1 or 3 channels"),
        (torch.zeros(2, 4, 8, 8), "1 or 3 channels"),
        (torch.zeros(2, 1, 16, 16), "takes 8×8 images"),
    ],
)
def test_bad_images(digits_extractor, images, message):
    with pytest.raises(ValueError, match=message):
        digits_extractor.extract(images)


def test_compute_features_and_statistics(digits, digits_extractor):
    images, _ = digits
    batches = list(images[:100].split(32))
    features = compute_features(digits_extractor, batches)
    statistics = compute_statistics(digits_extractor, batches, metadata={"reference": "digits"})
    assert features.shape == (100, 64) and statistics.num_samples == 100
    torch.testing.assert_close(torch.from_numpy(statistics.mean), features.double().mean(0))
    with pytest.raises(ValueError, match="No images"):
        compute_statistics(digits_extractor, [])
    with pytest.raises(ValueError, match="No images"):
        compute_features(digits_extractor, iter([]))


def test_dinov2_from_a_local_folder(tiny_dinov2, digits):
    images, _ = digits
    cls = Dinov2FeatureExtractor(str(tiny_dinov2))
    mean = Dinov2FeatureExtractor(str(tiny_dinov2), pooling="mean")
    assert (cls.feature_dim, cls.channels) == (32, 3)
    assert cls.name == f"dinov2_cls({tiny_dinov2})"
    cls_features, mean_features = cls.extract(images[:3]), mean.extract(images[:3])
    assert cls_features.shape == mean_features.shape == (3, 32)
    assert not torch.allclose(cls_features, mean_features)
    # The CLS feature is the model's pooled output on 224×224 ImageNet-normalised pixels.
    pixels = torch.nn.functional.interpolate((images[:3] + 1) / 2, size=224, mode="bicubic", antialias=True)
    pixels = (pixels.clamp(0, 1).expand(-1, 3, -1, -1) - cls.mean) / cls.std
    with torch.no_grad():
        torch.testing.assert_close(cls_features, cls.model(pixel_values=pixels).pooler_output)


def test_dinov2_errors(monkeypatch, tiny_dinov2):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="save_pretrained"):
        Dinov2FeatureExtractor("facebook/dinov2-large")  # not in the cache, and no network
    with pytest.raises(ValueError, match="'cls' or 'mean'"):
        Dinov2FeatureExtractor(str(tiny_dinov2), pooling="max")


def test_dinov2_refuses_other_models(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 'vit' model, not DINOv2"):
        Dinov2FeatureExtractor(str(tmp_path))


def test_inception_without_pytorch_fid(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install pytorch-fid \(needs torchvision\)"):
        InceptionFeatureExtractor()


@pytest.fixture
def fake_pytorch_fid(monkeypatch):
    """A stand-in for pytorch_fid.inception with its structure: the network's constructor fetches its weights
    with the module's `load_state_dict_from_url` (which fails here: no network), and returns pool3 maps."""
    module = types.ModuleType("pytorch_fid.inception")

    def no_network(url, **kwargs):
        raise OSError(f"cannot reach {url}")

    class InceptionV3(torch.nn.Module):
        BLOCK_INDEX_BY_DIM = {64: 0, 192: 1, 768: 2, 2048: 3}

        def __init__(self, output_blocks):
            super().__init__()
            assert output_blocks == [3]
            self.pool3 = torch.nn.Linear(3, 2048)
            self.load_state_dict(
                module.load_state_dict_from_url("https://example/weights.pth", progress=True)
            )

        def forward(self, images):  # pytorch-fid's input range is [0, 1]
            assert images.min() >= 0 and images.shape[1] == 3
            return [self.pool3(images.mean(dim=(2, 3)))[:, :, None, None]]

    module.InceptionV3, module.load_state_dict_from_url = InceptionV3, no_network
    package = types.ModuleType("pytorch_fid")
    package.inception = module
    monkeypatch.setitem(sys.modules, "pytorch_fid", package)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", module)
    return module


def test_inception_weights_from_a_file(tmp_path, fake_pytorch_fid):
    with pytest.raises(OSError, match="--inception-weights PATH"):
        InceptionFeatureExtractor()  # would download
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        InceptionFeatureExtractor(tmp_path / "missing.pth")
    weights = {"pool3.weight": torch.randn(2048, 3), "pool3.bias": torch.randn(2048)}
    torch.save(weights, tmp_path / "weights.pth")
    extractor = InceptionFeatureExtractor(tmp_path / "weights.pth")
    assert fake_pytorch_fid.load_state_dict_from_url.__name__ == "no_network"  # the patch is undone
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    pixels = ((images + 1) * 127.5).round() / 255  # the network gets 8-bit pixels / 255
    expected = pixels.mean(dim=(1, 2, 3))[:, None] * weights["pool3.weight"].sum(1) + weights["pool3.bias"]
    torch.testing.assert_close(extractor.extract(images), expected)
