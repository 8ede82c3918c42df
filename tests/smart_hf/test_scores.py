from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from huggingface_hub.errors import RepositoryNotFoundError

from smart_hf import scores
from smart_hf.models.toy_mlp import MLPNoisePredictor
from smart_hf.scores import GaussianMixtureScore, ModelScore, default_alphas_cumprod, load_score_model


def mixture_log_density(x, means, std, a_t, s_t):
    """log p_t(x) of the diffused mixture, written directly with torch.distributions."""
    components = torch.distributions.Independent(
        torch.distributions.Normal(a_t * means, (a_t**2 * std**2 + s_t**2).sqrt().expand_as(means)), 1
    )
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.zeros(means.shape[0])), components
    )
    return mixture.log_prob(x)


def test_gaussian_mixture_noise_prediction_is_minus_sigma_times_autograd_score():
    means = torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.5, -3.0]])
    score = GaussianMixtureScore(means, std=0.3)
    for t in (0, 30, 400, 999):
        x = torch.randn(16, 2) * 2
        timesteps = torch.full((16,), t)
        a_t, s_t = score.signal_and_noise_scales(timesteps[:1], 1)
        x_req = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture_log_density(x_req, means, 0.3, a_t, s_t).sum(), x_req)
        torch.testing.assert_close(score(x, timesteps), -s_t * grad, rtol=1e-4, atol=1e-4)


def test_weighted_gaussian_mixture_noise_prediction_is_minus_sigma_times_finite_difference_score():
    """The weights enter the responsibilities: eps_hat = −s_t·∇log p_t, ∇ by central differences of
    log sum_k w_k N(x; a_t·mu_k, (a_t²·std² + s_t²)·I) written out by hand."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    weights = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    std = 0.5
    score = GaussianMixtureScore(means, std=std, weights=weights * 7)  # normalised inside
    x = torch.tensor([[0.0, 0.0], [0.2, 1.0], [-0.7, 0.4]], dtype=torch.float64)

    def log_density(points, a_t, variance):
        squared = (points[:, None] - a_t * means[None]).pow(2).sum(-1)
        return torch.logsumexp(weights.log() - squared / (2 * variance), dim=1)  # constants dropped

    step = 1e-5
    for t in (0, 100, 500):
        timesteps = torch.full((3,), t)
        a_t, s_t = (value.double() for value in score.signal_and_noise_scales(timesteps[:1], 1))
        variance = a_t**2 * std**2 + s_t**2
        differences = [
            log_density(x + step * e, a_t, variance) - log_density(x - step * e, a_t, variance)
            for e in torch.eye(2, dtype=torch.float64)
        ]
        gradient = torch.stack(differences, 1) / (2 * step)
        eps_hat = score(x.float(), timesteps).double()
        torch.testing.assert_close(eps_hat, -s_t * gradient, rtol=1e-4, atol=1e-4)
    equal = GaussianMixtureScore(means, std=std)(x.float(), torch.full((3,), 100))
    assert (equal - score(x.float(), torch.full((3,), 100))).abs().max() > 0.05  # the weights matter here


def test_gaussian_mixture_rejects_bad_means():
    with pytest.raises(ValueError, match="num_components, dim"):
        GaussianMixtureScore(torch.zeros(3), std=0.1)


class ConstantOutputModel(torch.nn.Module):
    """Returns a fixed tensor as its 'prediction', to check prediction-type conversions."""

    def __init__(self, output):
        super().__init__()
        self.output = output
        self.config = type("Config", (), {})()

    def forward(self, sample, timestep, **kwargs):
        return type("Out", (), {"sample": self.output})()


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_model_score_converts_prediction_types_to_noise(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    timesteps = torch.tensor([10, 100, 500, 900])
    a = scheduler.alphas_cumprod[timesteps].sqrt()[:, None]
    s = (1 - scheduler.alphas_cumprod[timesteps]).sqrt()[:, None]
    x_t = a * x0 + s * eps
    target = a * eps - s * x0 if prediction_type == "v_prediction" else x0
    score = ModelScore(ConstantOutputModel(target), scheduler, sample_shape=(2,))
    torch.testing.assert_close(score(x_t, timesteps), eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_model_score_keeps_a_bfloat16_input_in_bfloat16(prediction_type):
    x_t = torch.randn(4, 2).bfloat16()
    score = ModelScore(
        ConstantOutputModel(torch.zeros(4, 2)), DDPMScheduler(prediction_type=prediction_type), (2,)
    )
    assert score(x_t, torch.tensor([10, 100, 500, 900])).dtype == torch.bfloat16


def test_add_noise_keeps_a_bfloat16_sample_in_bfloat16():
    score = ModelScore(ConstantOutputModel(torch.zeros(4, 2)), DDPMScheduler(), (2,))
    x0 = torch.randn(4, 2).bfloat16()
    noisy = score.add_noise(x0, torch.randn_like(x0), torch.tensor([10, 100, 500, 900]))
    assert noisy.dtype == torch.bfloat16


def test_model_score_is_frozen_and_stays_in_eval_mode():
    model = MLPNoisePredictor(hidden_dim=16, num_layers=1)
    score = ModelScore(model, DDPMScheduler(), sample_shape=(2,))
    score.train()
    assert not score.model.training
    assert not any(p.requires_grad for p in score.parameters())


def test_load_score_model_from_a_trained_folder(tmp_path):
    model = MLPNoisePredictor(hidden_dim=16, num_layers=1)
    model.save_pretrained(tmp_path / "score_model")
    DDPMScheduler(num_train_timesteps=500).save_pretrained(tmp_path / "scheduler")
    score = load_score_model(str(tmp_path))
    assert score.num_train_timesteps == 500 and score.sample_shape == (2,)
    x, t = torch.randn(3, 2), torch.tensor([1, 2, 3])
    torch.testing.assert_close(score(x, t), model(x, t).sample)


def test_load_score_model_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="No score model found"):
        load_score_model(str(tmp_path))
    with pytest.raises(ValueError, match="neither a folder nor a Hub id"):
        load_score_model("no/such/path")


def test_check_compatible_says_what_to_change():
    score = GaussianMixtureScore(torch.zeros(1, 2), std=0.1)
    with pytest.raises(ValueError, match=r"shape \(3,\).*expects \(2,\)"):
        score.check_compatible((3,))
    with pytest.raises(ValueError, match="outside the score model's schedule"):
        score.check_timestep_range(10, 1000)


def tiny_unet(**kwargs):
    config = {
        "sample_size": 8,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "down_block_types": ("DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D"),
    }
    return UNet2DModel(**{**config, **kwargs})


def test_load_score_model_from_a_ddpm_pipeline_folder(tmp_path):
    unet, scheduler = tiny_unet(), DDPMScheduler(num_train_timesteps=500, prediction_type="v_prediction")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
    score = load_score_model(str(tmp_path))
    assert score.sample_shape == (1, 8, 8) and score.num_classes is None
    torch.testing.assert_close(score.alphas_cumprod, scheduler.alphas_cumprod)
    assert not score.model.training and not any(p.requires_grad for p in score.parameters())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 400])
    a, s = (
        scheduler.alphas_cumprod[t].sqrt().view(2, 1, 1, 1),
        (1 - scheduler.alphas_cumprod[t]).sqrt().view(2, 1, 1, 1),
    )
    with torch.no_grad():
        expected = a * unet(x, t).sample + s * x
    torch.testing.assert_close(score(x, t), expected)


def test_load_score_model_from_a_bare_unet_folder_assumes_the_ddpm_schedule(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    score = load_score_model(tmp_path)
    torch.testing.assert_close(score.alphas_cumprod, default_alphas_cumprod())
    assert score.prediction_type == "epsilon"


@pytest.mark.parametrize("layout", ["pipeline", "flat"])
def test_hub_id_downloads_only_configs_and_safetensors(tmp_path, monkeypatch, layout):
    # A DDPMPipeline repository (unet/ + scheduler/) or a flat one, like google/ddpm-cifar10-32 today.
    scheduler = DDPMScheduler(num_train_timesteps=100)
    if layout == "pipeline":
        DDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(tmp_path)
    else:
        tiny_unet().save_pretrained(tmp_path)
        scheduler.save_pretrained(tmp_path)
    requests = []

    def fake_snapshot_download(repo_id, allow_patterns):
        requests.append(repo_id)
        assert not any(pattern.endswith(".bin") for pattern in allow_patterns)
        return str(tmp_path)

    monkeypatch.setattr(scores, "snapshot_download", fake_snapshot_download)
    score = load_score_model("google/ddpm-cifar10-32")
    assert requests == ["google/ddpm-cifar10-32"]
    assert score.sample_shape == (1, 8, 8) and score.num_train_timesteps == 100


def test_pickled_weights_are_refused(tmp_path):
    tiny_unet().save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(ValueError, match="no safetensors weights"):
        load_score_model(str(tmp_path))


def test_class_conditional_unet_gets_labels_and_an_unconditional_one_ignores_them(tmp_path):
    tiny_unet(num_class_embeds=3).save_pretrained(tmp_path / "conditional" / "unet")
    tiny_unet().save_pretrained(tmp_path / "unconditional" / "unet")
    conditional = load_score_model(str(tmp_path / "conditional"))
    unconditional = load_score_model(str(tmp_path / "unconditional"))
    assert conditional.num_classes == 3 and unconditional.num_classes is None
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor([5, 50]), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(
            conditional(x, t, labels), conditional.model(x, t, class_labels=labels).sample
        )
        assert not torch.allclose(conditional(x, t, labels), conditional(x, t, labels.flip(0)))
        torch.testing.assert_close(unconditional(x, t, labels), unconditional(x, t))
    with pytest.raises(ValueError, match=r"class-conditional \(3 classes\); pass class_labels"):
        conditional(x, t)


def test_requested_dtype_and_gradients_reach_the_input(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    score = load_score_model(str(tmp_path), torch_dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in score.model.parameters())
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    eps = score(x, torch.tensor([30, 30]))
    assert eps.dtype == torch.float32
    eps.square().mean().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in score.model.parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_learned_variance_output_contributes_its_noise_half(tmp_path, channels):
    unet = tiny_unet(in_channels=channels, out_channels=2 * channels)
    unet.save_pretrained(tmp_path)
    x, t = torch.randn(2, channels, 8, 8), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(load_score_model(str(tmp_path))(x, t), unet(x, t).sample[:, :channels])


def test_unsupported_unets_are_refused(tmp_path):
    tiny_unet(class_embed_type="timestep").save_pretrained(tmp_path / "embedded")
    with pytest.raises(ValueError, match="class_embed_type='timestep' are not supported"):
        load_score_model(str(tmp_path / "embedded"))
    tiny_unet(out_channels=3).save_pretrained(tmp_path / "channels")
    with pytest.raises(ValueError, match="maps 1 channels to 3"):
        load_score_model(str(tmp_path / "channels"))


def image_score(shape, num_classes=None):
    return ModelScore(tiny_unet(num_class_embeds=num_classes), DDPMScheduler(), sample_shape=shape)


@pytest.mark.parametrize(
    "generator_shape, score_shape, message",
    [
        (
            (3, 32, 32),
            (1, 16, 16),
            "The generator makes 3×32×32 images but the score model expects 1×16×16: pass --resolution 16 "
            "--channels 1, or use a score model trained at 32×32 RGB.",
        ),
        (
            (1, 8, 8),
            (3, 8, 8),
            "The generator makes 1×8×8 images but the score model expects 3×8×8: pass --channels 3, "
            "or use a score model trained at 8×8 grayscale.",
        ),
        (
            (1, 16, 16),
            (1, 8, 8),
            "The generator makes 1×16×16 images but the score model expects 1×8×8: pass --resolution 8, "
            "or use a score model trained at 16×16 grayscale.",
        ),
    ],
)
def test_check_compatible_says_which_image_settings_to_change(generator_shape, score_shape, message):
    with pytest.raises(ValueError) as error:
        image_score(score_shape).check_compatible(generator_shape)
    assert str(error.value) == message


def test_check_compatible_class_rules():
    conditional, unconditional = image_score((1, 8, 8), num_classes=10), image_score((1, 8, 8))
    for generator_classes in (None, 0):
        with pytest.raises(
            ValueError, match=r"class-conditional \(10 classes\) but the generator is unconditional"
        ):
            conditional.check_compatible((1, 8, 8), generator_classes)
    with pytest.raises(ValueError, match="generator has 5 classes but the score model has 10"):
        conditional.check_compatible((1, 8, 8), 5)
    conditional.check_compatible((1, 8, 8), 10)
    unconditional.check_compatible((1, 8, 8), 10)  # the labels are simply not passed
    unconditional.check_compatible((1, 8, 8))


@pytest.fixture
def no_download(monkeypatch):
    """Fail a test that reaches the Hub: the name should have been refused before."""

    def snapshot_download(repo_id, allow_patterns):
        raise AssertionError(f"snapshot_download({repo_id!r}) was called")

    monkeypatch.setattr(scores, "snapshot_download", snapshot_download)


@pytest.mark.parametrize("name", ["outputs/my-unet", "./unet", "../unet", "~/no-such-unet", "/no/such/unet"])
def test_a_mistyped_local_score_path_is_refused_at_once(no_download, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()  # so 'outputs/my-unet' reads as a path, not as the Hub id owner/name
    with pytest.raises(ValueError) as error:
        load_score_model(name)
    local = ", though 'outputs' is" if name.startswith("outputs/") else ""
    assert str(error.value) == (
        f"Score model {name!r} is neither a folder nor a Hub id: no such folder{local} (a Hub id is "
        "owner/name, like 'google/ddpm-cifar10-32')."
    )


def test_a_file_given_as_score_model_is_refused(no_download, tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="config.json' is a file; pass the folder that holds its config"):
        load_score_model(str(tmp_path / "config.json"))


def test_a_home_relative_score_folder_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    tiny_unet().save_pretrained(tmp_path / "unet")
    assert load_score_model("~/unet").sample_shape == (1, 8, 8)


def test_an_uncached_hub_score_model_while_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError) as error:
        load_score_model("someone/not-cached")
    assert str(error.value) == (
        "Score model 'someone/not-cached': no such folder, and the Hub model is neither cached nor "
        "reachable; unset HF_HUB_OFFLINE to download it."
    )


def test_a_hub_id_the_hub_does_not_know_is_one_line(monkeypatch):
    def snapshot_download(repo_id, allow_patterns):
        response = SimpleNamespace(headers={}, request=None)
        raise RepositoryNotFoundError("404 Client Error.\n\nRepository Not Found.", response=response)

    monkeypatch.setattr(scores, "snapshot_download", snapshot_download)
    with pytest.raises(ValueError) as error:
        load_score_model("someone/no-such-model")
    assert str(error.value) == (
        "Score model 'someone/no-such-model': no such folder, and the Hub has no model you can read under "
        "that id (check it; a private or gated one needs `hf auth login`)."
    )
