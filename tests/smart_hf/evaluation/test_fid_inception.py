"""Real Inception FID: pytorch-fid's own InceptionV3 (random weights from a file, no download) and its own
Fréchet distance, against smart_hf's. pytorch-fid needs torchvision, which cannot live in .venv here, so these
tests run in .venv-fid (`make test-fid`) and are skipped elsewhere."""

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

pytest.importorskip(
    "torchvision", reason="needs torchvision and pytorch-fid: run `make test-fid` (a separate .venv-fid)"
)
inception = pytest.importorskip("pytorch_fid.inception", reason="needs pytorch-fid: run `make test-fid`")
fid_score = pytest.importorskip("pytorch_fid.fid_score", reason="needs pytorch-fid: run `make test-fid`")

from smart_hf import cli  # noqa: E402
from smart_hf.evaluation import FeatureStatistics, InceptionFeatureExtractor, frechet_distance  # noqa: E402
from smart_hf.evaluation.features import FID_WEIGHTS_URL  # noqa: E402
from smart_hf.evaluation.images import folder_images, list_image_files  # noqa: E402


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    """pytorch-fid's FID Inception (`fid_inception_v3`, the real architecture), randomly initialised and saved
    like the published weights file: its loading of the published weights is skipped while it is built."""
    import torchvision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(torchvision.models.Inception3, "load_state_dict", lambda self, state_dict: None)
        torch.manual_seed(0)
        state_dict = inception.fid_inception_v3().state_dict()
    path = tmp_path_factory.mktemp("weights") / "pt_inception-random.pth"
    torch.save(state_dict, path)
    return path


@pytest.fixture(scope="module")
def extractor(weights_path):
    return InceptionFeatureExtractor(weights_path)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three 8×8 RGB and three 8×8 grayscale PNGs of random pixels."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"rgb{index}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"gray{index}.png")
    return folder


def test_weights_come_from_the_file(weights_path, extractor):
    saved = torch.load(weights_path, weights_only=True)
    network = dict(extractor.network.named_parameters())
    # InceptionV3.blocks[0][0] is torchvision's Conv2d_1a_3x3, the first layer of the saved network.
    torch.testing.assert_close(network["blocks.0.0.conv.weight"], saved["Conv2d_1a_3x3.conv.weight"])
    assert extractor.network.resize_input and extractor.network.normalize_input
    assert FID_WEIGHTS_URL == inception.FID_WEIGHTS_URL


def test_missing_weights_file_says_where_to_get_it(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=f"No Inception weights at .*missing.pth. Download {FID_WEIGHTS_URL}"
    ):
        InceptionFeatureExtractor(tmp_path / "missing.pth")


def test_features_match_pytorch_fid_reading_the_files(extractor, image_folder):
    """8-bit images loaded by smart_hf give pytorch-fid's own activations of the same files: pixels / 255,
    grayscale repeated to RGB, resized to 299×299 by the network (bilinear)."""
    (images,) = folder_images(image_folder, resolution=8, channels=3, batch_size=6)
    features = extractor.extract(images)
    assert features.shape == (6, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and features.std(dim=0).max() > 0
    files = list_image_files(image_folder)
    expected = fid_score.get_activations(files, extractor.network, batch_size=6, dims=2048, num_workers=0)
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-4, atol=1e-6)
    # Grayscale images in one channel are the same images.
    grayscale = images[[index for index, path in enumerate(files) if path.name.startswith("gray")]]
    torch.testing.assert_close(extractor.extract(grayscale[:, :1]), features[: len(grayscale)])


def test_float_images_are_rounded_to_8_bits(extractor):
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    rounded = ((images + 1) * 127.5).round() / 127.5 - 1
    torch.testing.assert_close(extractor.extract(images), extractor.extract(rounded))


@pytest.mark.parametrize("sqrtm_fails_once", [False, True])
def test_frechet_distance_matches_pytorch_fid(monkeypatch, sqrtm_fails_once):
    """Our distance (streaming float64 statistics) equals pytorch-fid's `calculate_frechet_distance` on
    numpy's mean and covariance, also on its fallback path (eps·I when sqrtm is not finite)."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 64)) @ rng.normal(size=(64, 64))
    fake = 0.8 * rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64)) + 0.5
    if sqrtm_fails_once:  # the first sqrtm of each tool is not finite; both tools call scipy.linalg.sqrtm
        sqrtm, calls = scipy.linalg.sqrtm, []

        def flaky_sqrtm(matrix, disp=True):
            calls.append(matrix)
            result = np.full_like(matrix, np.inf) if len(calls) % 2 else sqrtm(matrix)
            return result if disp else (result, 0.0)  # pytorch-fid asks for (sqrtm, error) with disp=False

        monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    expected = fid_score.calculate_frechet_distance(
        real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
    )
    streamed = FeatureStatistics()
    for batch in np.array_split(fake, 7):
        streamed.update(batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distance = frechet_distance(FeatureStatistics.from_features(real), streamed)
    assert distance == pytest.approx(expected, rel=1e-6)
    assert any("adding 1e-06·I" in str(warning.message) for warning in caught) == sqrtm_fails_once


def test_statistics_files_are_interchangeable(tmp_path):
    rng = np.random.default_rng(1)
    ours = FeatureStatistics.from_features(rng.normal(size=(100, 8)))
    ours.save(tmp_path / "ours.npz")
    mu, sigma = fid_score.compute_statistics_of_path(str(tmp_path / "ours.npz"), None, 50, 8, "cpu")
    np.testing.assert_array_equal(mu, ours.mean)
    np.testing.assert_array_equal(sigma, ours.covariance)
    np.savez_compressed(tmp_path / "theirs.npz", mu=mu, sigma=sigma)  # as pytorch-fid's --save-stats writes
    theirs = FeatureStatistics.load(tmp_path / "theirs.npz", num_samples=100)
    assert frechet_distance(theirs, ours) == pytest.approx(0, abs=1e-9)


def test_cli_with_inception_weights(weights_path, image_folder, tmp_path, capsys):
    """`smart-hf evaluate ... --inception-weights PATH` runs the real network (pr: no 2048-d covariance)."""
    output = tmp_path / "pr.json"
    status = cli.main(
        ["evaluate", str(image_folder), "--reference", str(image_folder), "--metric", "pr", "--features",
         "inception", "--inception-weights", str(weights_path), "--resolution", "8", "--k", "1",
         "--device", "cpu", "--output", str(output)]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    results = json.loads(output.read_text())
    assert results["feature_space"] == "inception_v3_pool3"
    assert results["precision"] == results["recall"] == 1.0  # the same images on both sides
