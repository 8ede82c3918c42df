"""The run configurations: the command line they generate pins the scripts' interface, presets load, and the
flat form recorded in metrics.json round-trips."""

import json
from pathlib import Path

import pytest

from smart_hf.smart import SmartConfig
from smart_hf.training.config import (
    GANTrainingConfig,
    ScoreModelTrainingConfig,
    parse_gan_args,
    parse_score_model_args,
)
from smart_hf.training.options import build_parser, from_flat, iter_options, to_flat

REPO = Path(__file__).resolve().parents[2]
# Every flag of the two scripts before the redesign, with its default, choices and arity. Kept after the old
# parsers are gone: it pins the interface users' commands and presets rely on.
FLAGS_BEFORE = json.loads((Path(__file__).parent / "flags.json").read_text())
PARSERS = {
    "train_smart_gan.py": build_parser(GANTrainingConfig),
    "train_score_model.py": build_parser(ScoreModelTrainingConfig),
}


@pytest.mark.parametrize("script", sorted(FLAGS_BEFORE))
def test_every_flag_of_the_old_parser_exists_with_the_same_default(script):
    actions = {
        flag: action for action in PARSERS[script]._actions for flag in action.option_strings if flag != "-h"
    }
    for flag, old in FLAGS_BEFORE[script].items():
        assert flag in actions, f"{script}: {flag} is gone"
        action = actions[flag]
        assert action.default == old["default"], (
            f"{script}: {flag} default {action.default} != {old['default']}"
        )
        assert action.dest == old["dest"]
        assert (list(action.choices) if action.choices else None) == old["choices"], flag
        assert (action.nargs == 0) == old["switch"], flag
        assert action.option_strings[1:] == old["aliases"], flag
    new_flags = {action.option_strings[0] for action in PARSERS[script]._actions if action.dest != "help"}
    assert new_flags == set(FLAGS_BEFORE[script]), "a flag was added: add it to flags.json too"


def test_technique_flags_fill_their_config():
    config = parse_gan_args(
        "--smart_weight 0.3 --smart_gradient sds --nice --nice_target 0.5 --masked_gan spatial "
        "--mask_ratio 0.4 --diffusion_gan --diffusion_gan_sampling uniform --nats --nats_steps 2".split()
    )
    assert config.smart == SmartConfig(weight=0.3, gradient_mode="sds")
    assert (config.nice.enabled, config.nice.target) == (True, 0.5)
    assert (config.masked_gan.mode, config.masked_gan.ratio) == ("spatial", 0.4)
    assert (config.diffusion_gan.enabled, config.diffusion_gan.t_max) == (True, 500)  # uniform's default T
    assert (config.nats.enabled, config.nats.num_steps, config.nats.anneal_steps) == (True, 2, 4000)


def test_flat_options_round_trip():
    config = parse_gan_args(["--config", str(REPO / "training/configs/digits.yaml"), "--nice"])
    flat = to_flat(config)
    assert (
        flat["smart_weight"] == config.smart.weight and flat["nice"] is True and flat["masked_gan"] == "none"
    )
    assert list(flat) == [action.dest for action in PARSERS["train_smart_gan.py"]._actions[1:]]
    assert from_flat(GANTrainingConfig, flat) == config


def test_score_model_defaults_depend_on_the_data():
    assert parse_score_model_args(["--dataset_name", "grid25"]).train_batch_size == 1024
    assert parse_score_model_args([]).train_batch_size == 64
    assert parse_score_model_args(["--num_train_timesteps", "50"]).ddpm_num_steps == 50


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--nice_target 0.5", "--nice_target only act with --nice"),
        ("--nats_steps 2", "--nats_steps only act with --nats"),
        ("--smart_weight nan", "--smart_weight must be a finite number"),
        ("--nats --nats_anneal constant --nats_final_weight 0.5", "keeps the weight at 1"),
        ("--diffusion_gan --diffusion_gan_t_min 0", "1 <= t_min <= t_max"),
        ("--masked_gan spatial", "toy 2-D set"),
    ],
)
def test_bad_technique_settings_are_refused_before_training(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_gan_args(flags.split()).check()


def _options_with_bounds(config_class):
    for _, flag, field, _ in iter_options(config_class):
        bounds = {
            key: field.metadata[key] for key in ("min", "above", "max", "below") if key in field.metadata
        }
        if bounds:
            yield flag, bounds


@pytest.mark.parametrize(
    "config_class, parse_args",
    [(GANTrainingConfig, parse_gan_args), (ScoreModelTrainingConfig, parse_score_model_args)],
)
def test_every_numeric_option_out_of_range_or_not_finite_is_refused_naming_its_flag(config_class, parse_args):
    checked = 0
    for flag, bounds in _options_with_bounds(config_class):
        outside = [
            bound - 1 if key == "min" else bound * 2 if key == "max" else bound
            for key, bound in bounds.items()
        ]
        nargs = 2 if flag.endswith("adam_betas") else 1
        for value in outside:
            with pytest.raises(ValueError, match=f"--{flag} must be"):
                parse_args([f"--{flag}", *[str(value)] * nargs]).check()
            checked += 1
    assert checked >= 30
    for flag in ("g_learning_rate", "smart_weight", "nice_target", "ema_power"):
        if config_class is GANTrainingConfig:
            for value in ("nan", "inf"):
                with pytest.raises(ValueError, match=f"--{flag} must be a finite number"):
                    parse_args([f"--{flag}", value]).check()


def test_train_data_dir_on_the_command_line_replaces_a_presets_data_set():
    digits = str(REPO / "training/configs/digits.yaml")
    config = parse_gan_args(["--config", digits, "--train_data_dir", "my/images", "--score", "my/unet"])
    assert (config.dataset_name, config.train_data_dir, config.latent_dim) == (None, "my/images", 32)
    config.check()  # no longer "digits and a folder"
    # Given on the command line too, the data set stays (and the checks decide).
    config = parse_gan_args(["--config", digits, "--train_data_dir", "my/images", "--dataset_name", "digits"])
    assert (config.dataset_name, config.train_data_dir) == ("digits", "my/images")
    # Without --score, a folder has no default score model: the error says so.
    with pytest.raises(ValueError, match="Pass --score"):
        parse_gan_args(["--config", digits, "--train_data_dir", "my/images"]).check()
