import pytest
import torch

from smart_hf.losses import GANLoss
from smart_hf.masked_gan import BalancedSpectralMask, ShiftedSpatialMask
from smart_hf.models import DCGANDiscriminator


@pytest.mark.parametrize("ratio, patch_size", [(0.3, 4), (0.5, 3), (0.1, 8)])
def test_spatial_masked_fraction_matches_the_ratio(ratio, patch_size):
    masked, kwargs = ShiftedSpatialMask(ratio, patch_size)(torch.ones(512, 3, 32, 32))
    assert kwargs == {}
    assert (masked == 0).float().mean().item() == pytest.approx(ratio, abs=0.02)
    assert torch.equal(masked[:, 0], masked[:, 2])  # one mask for all channels of an image


def test_spatial_mask_is_made_of_patches_on_a_shifted_grid():
    mask = ShiftedSpatialMask(0.5, 4).mask(256, 16, 16, torch.device("cpu"))
    # Every masked block is patch-aligned up to the image's own shift: rows change only at one phase.
    row_changes = (mask[:, 1:] != mask[:, :-1]).any(2)  # (B, 15): where the patch row may end
    phases = {
        tuple(torch.nonzero(changes).flatten().remainder(4).unique().tolist()) for changes in row_changes
    }
    assert all(len(phase) <= 1 for phase in phases)
    assert len({phase for phase in phases if phase}) == 4  # the grid is shifted differently across images


def test_spatial_mask_is_differentiable():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    masked, _ = ShiftedSpatialMask(0.5, 2)(x)
    masked.sum().backward()
    assert torch.equal(x.grad, (masked != 0).float())


def test_spectral_mask_removes_exactly_the_chosen_bands():
    spectral = BalancedSpectralMask(resolution=16, num_bands=4, bands_per_image=2)
    images = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    masked, kwargs = spectral(images)
    removed = spectral.recent_removed_bands[-1]
    assert kwargs == {} and removed.shape == (8, 4) and (removed.sum(1) == 2).all()
    before, after = torch.fft.fft2(images), torch.fft.fft2(masked)
    band_index = spectral.band_index
    for i in range(8):
        gone = removed[i][band_index]  # (16, 16): coefficients of the removed bands
        assert after[i][:, gone].abs().max() < 1e-10
        torch.testing.assert_close(after[i][:, ~gone], before[i][:, ~gone])


def test_bands_are_radial_rings_with_the_lowest_frequencies_first():
    band_index = BalancedSpectralMask.radial_bands(8, 8, 4)
    assert band_index[0, 0] == 0 and band_index[4, 4] == 3  # DC and the highest (Nyquist) corner
    assert torch.equal(band_index, band_index.T) and torch.equal(band_index[1:], band_index[1:].flip(0))
    with pytest.raises(ValueError, match=r"leave some of 40 frequency bands empty"):
        BalancedSpectralMask(resolution=8, num_bands=40)


def test_removing_bands_keeps_the_images_dtype_and_names_a_wrong_resolution():
    spectral = BalancedSpectralMask(resolution=8)
    images, removed = torch.randn(2, 1, 8, 8), torch.tensor([[True, False, False, False]] * 2)
    low = spectral.remove_bands(images.bfloat16(), removed)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(
        low.float(), spectral.remove_bands(images.bfloat16().float(), removed), atol=0.02, rtol=0.02
    )
    with pytest.raises(
        ValueError, match=r"^BalancedSpectralMask was built for \(8, 8\) images, got \(4, 4\)\.$"
    ):
        spectral.remove_bands(torch.zeros(2, 1, 4, 4), removed)


def test_spectral_mask_is_differentiable():
    spectral = BalancedSpectralMask(resolution=8)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    masked, _ = spectral(x)
    (masked * torch.randn_like(masked)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bands_whose_removal_leaves_d_the_smallest_margin_are_removed_more_often():
    spectral = BalancedSpectralMask(resolution=8, num_bands=4, bands_per_image=1)
    torch.testing.assert_close(spectral.probabilities, torch.full((4,), 0.25, dtype=torch.float64))
    for _ in range(20):
        spectral(torch.zeros(64, 1, 8, 8))
        spectral(torch.zeros(64, 1, 8, 8))
        real_removed, _ = spectral.recent_removed_bands
        # D is fooled (real scored like fake) exactly when band 2 is missing: D relies on band 2.
        real_logits = torch.where(real_removed[:, 2], 0.0, 2.0)
        logs = spectral.update(real_logits, torch.zeros(64))
    probabilities = spectral.probabilities
    assert probabilities.argmax() == 2 and probabilities[2] > 0.35
    assert probabilities.min() >= 0.5 / 4  # the floor keeps every band in play
    assert probabilities.sum().item() == pytest.approx(1.0)
    assert logs["mask_band_2_p"] == pytest.approx(probabilities[2].item())


def test_spectral_update_needs_the_real_and_fake_calls_and_state_round_trips():
    spectral = BalancedSpectralMask(resolution=8)
    message = r"^update\(\) must follow the calls on the real batch and then the fake batch\.$"
    with pytest.raises(RuntimeError, match=message):
        spectral.update(torch.zeros(4), torch.zeros(4))
    spectral(torch.zeros(4, 1, 8, 8))
    spectral(torch.zeros(4, 1, 8, 8))
    with pytest.raises(RuntimeError, match=message):  # two calls, but not on these batches
        spectral.update(torch.zeros(3), torch.zeros(4))
    spectral.update(torch.randn(4), torch.randn(4))
    restored = BalancedSpectralMask(resolution=8)
    restored.load_state_dict(spectral.state_dict())
    torch.testing.assert_close(restored.probabilities, spectral.probabilities)
    with pytest.raises(ValueError, match="saved spectral mask has 4 bands, this run 3"):
        BalancedSpectralMask(resolution=8, num_bands=3).load_state_dict(spectral.state_dict())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ShiftedSpatialMask(ratio=1.0), r"ratio must lie in \(0, 1\)"),
        (lambda: ShiftedSpatialMask(patch_size=0), "patch size must be >= 1"),
        (lambda: BalancedSpectralMask(8, num_bands=1), "at least 2 bands"),
        (lambda: BalancedSpectralMask(8, num_bands=4, bands_per_image=4), r"must lie in \[1, 3\]"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_gan_loss_masks_real_and_fake_and_keeps_r1_on_the_clean_input():
    spatial, spectral = ShiftedSpatialMask(0.5, 2), BalancedSpectralMask(resolution=8)
    seen = []
    discriminator = DCGANDiscriminator(in_channels=1, resolution=8, base_channels=4)
    discriminator.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    generator = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Unflatten(1, (1, 8, 8)))
    loss = GANLoss(generator, discriminator, r1_gamma=1.0, r1_interval=1, augmentations=[spatial, spectral])
    terms = loss.discriminator_phase(torch.ones(6, 1, 8, 8), torch.randn(6, 4), step=0)
    assert "r1_penalty" in terms.logs and "mask_band_0_p" in terms.logs
    assert not torch.equal(seen[0], torch.ones(6, 1, 8, 8))  # D saw the masked real batch
    terms = loss.generator_phase(torch.randn(6, 4), step=0)
    terms.total.backward()
    assert all(p.grad is not None for p in generator.parameters())


def test_spectral_update_moves_the_margin_of_each_band_seen_in_both_batches_by_hand():
    """margin_k ← margin_k + rate·(mean real − mean fake logit of the images missing band k − margin_k), only
    for bands missing from at least one real and one fake image; the statistics go through all_reduce."""
    reduced = []
    spectral = BalancedSpectralMask(resolution=8, adapt_rate=0.5, all_reduce=lambda s: reduced.append(s) or s)
    spectral.margins = torch.tensor([0.5, -0.2, 0.3, 0.1], dtype=torch.float64)
    bands = torch.eye(4, dtype=torch.bool)
    # Real images miss bands 0, 0, 1, 2; fake ones 0, 1, 1, 3: band 0 is seen 2 + 1 times, band 1 1 + 2,
    # band 2 only in real images and band 3 only in fake ones (neither moves).
    spectral.recent_removed_bands.extend([bands[[0, 0, 1, 2]], bands[[0, 1, 1, 3]]])
    logs = spectral.update(torch.tensor([1.0, 3.0, -2.0, 4.0]), torch.tensor([0.5, -1.0, 2.0, 7.0]))
    band_0 = 0.5 + 0.5 * ((1.0 + 3.0) / 2 - 0.5 - 0.5)
    band_1 = -0.2 + 0.5 * (-2.0 - (-1.0 + 2.0) / 2 + 0.2)
    expected = torch.tensor([band_0, band_1, 0.3, 0.1], dtype=torch.float64)
    torch.testing.assert_close(spectral.margins, expected)
    assert len(reduced) == 1 and reduced[0].shape == (4, 4)
    assert logs == {f"mask_band_{k}_p": p for k, p in enumerate(spectral.probabilities.tolist())}
