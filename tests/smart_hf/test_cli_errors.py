"""`smart-hf` says in one line what is wrong with a bad input, instead of a traceback (the Hub's errors:
test_push.py)."""

import pytest
import torch

from smart_hf import cli, hub
from smart_hf.models import DCGANGenerator


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    generator = DCGANGenerator(latent_dim=8, resolution=8, base_channels=4, out_channels=1)
    out = tmp_path_factory.mktemp("exports") / "export"
    hub.export_pipeline(generator, out, dataset="digits", num_samples=2)
    return out


def test_a_device_this_torch_cannot_use_is_refused(exported, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA: --device cuda is valid")
    argv = ["generate", str(exported), "--device", "cuda", "--out", str(tmp_path / "grid.png")]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert "--device cuda cannot be used with this torch" in error and "pass --device cpu" in error
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_zero_samples_are_refused(exported, tmp_path, capsys, command):
    argv = [command, str(exported), "--num-samples", "0"]
    argv += ["--reference", "digits"] if command == "evaluate" else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "argument --num-samples: must be >= 1, got 0" in capsys.readouterr().err
