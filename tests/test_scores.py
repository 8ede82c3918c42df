import pytest
import torch
from diffusers import DDPMScheduler

from smart_hf.models.toy_mlp import MLPNoisePredictor
from smart_hf.scores import GaussianMixtureScore, ModelScore, load_score_model


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
