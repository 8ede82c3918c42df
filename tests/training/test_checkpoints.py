"""The checkpoint scheme both loops share: complete checkpoints only, numeric order, pruning after writing."""

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator, PartialState

from smart_hf.training.checkpoints import (
    apply_optimizer_settings,
    find_checkpoint,
    incomplete_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    sorted_checkpoints,
)
from smart_hf.training.run_folder import claim_output_dir, run_id, run_identity


def test_only_complete_numbered_checkpoints_count_in_numeric_order(tmp_path):
    PartialState(cpu=True)  # find_checkpoint warns through accelerate's logger, which needs a state
    for name in (
        "checkpoint-30",
        "checkpoint-100",
        "checkpoint-best",
        "checkpoint-200.partial",
        "checkpoint-250",
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_state.json").write_text("{}")
    (tmp_path / "checkpoint-250" / "training_state.json").unlink()  # stopped before its state was written
    (tmp_path / "checkpoint-300").write_text("a file, not a checkpoint")
    assert sorted_checkpoints(str(tmp_path)) == ["checkpoint-30", "checkpoint-100"]
    assert incomplete_checkpoints(str(tmp_path)) == ["checkpoint-200.partial", "checkpoint-250"]
    assert find_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-100")
    assert sorted_checkpoints(str(tmp_path / "missing")) == []


def test_save_replaces_a_partial_checkpoint_prunes_after_writing_and_loads_back(tmp_path, caplog):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    save_checkpoint(accelerator, str(tmp_path), 1, {"global_step": 1}, total_limit=1)
    (tmp_path / "checkpoint-2.partial").mkdir()  # left by a run killed while writing checkpoint-2
    (tmp_path / "checkpoint-2.partial" / "stale").write_text("")
    with torch.no_grad():
        model.weight.fill_(3.0)
    with caplog.at_level("INFO", logger="smart_hf.training.checkpoints"):
        path = save_checkpoint(accelerator, str(tmp_path), 2, {"global_step": 2}, total_limit=1)
    assert "Removing old checkpoint checkpoint-1\n" in caplog.text

    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert not (tmp_path / "checkpoint-2" / "stale").exists()
    with torch.no_grad():
        model.weight.zero_()
    with caplog.at_level("INFO", logger="smart_hf.training.checkpoints"):
        assert load_checkpoint(accelerator, path) == {"global_step": 2}
    assert f"Resuming from {path}\n" in caplog.text
    assert torch.equal(model.weight, torch.full((2, 2), 3.0))
    # Indented for people who open it to see where a run stands.
    state_text = (tmp_path / "checkpoint-2" / "training_state.json").read_text()
    assert state_text == json.dumps({"global_step": 2}, indent=2)


def test_find_checkpoint_takes_a_path_or_a_name_in_the_output_folder_and_refuses_others(tmp_path):
    PartialState(cpu=True)
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "training_state.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere" / "checkpoint-9"
    elsewhere.mkdir(parents=True)
    assert find_checkpoint(str(tmp_path), "checkpoint-5") == str(tmp_path / "checkpoint-5")
    assert find_checkpoint(str(tmp_path / "new"), str(elsewhere)) == str(elsewhere)
    assert find_checkpoint(str(tmp_path / "new"), "latest") is None
    with pytest.raises(
        ValueError, match="--resume_from_checkpoint 'checkpoint-7': no such checkpoint folder"
    ):
        find_checkpoint(str(tmp_path), "checkpoint-7")


def test_prune_keeps_the_newest_checkpoints_and_no_limit_keeps_all(tmp_path):
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    for step in (1, 2, 3):
        save_checkpoint(accelerator, str(tmp_path), step, {"global_step": step})
    assert sorted_checkpoints(str(tmp_path)) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    save_checkpoint(accelerator, str(tmp_path), 10, {"global_step": 10}, total_limit=2)
    assert sorted_checkpoints(str(tmp_path)) == ["checkpoint-3", "checkpoint-10"]
    prune_checkpoints(str(tmp_path), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10"]


def test_saving_a_named_checkpoint_again_replaces_it(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    save_checkpoint(accelerator, str(tmp_path), 1, {"global_step": 1}, name="checkpoint-best")
    (tmp_path / "checkpoint-best.old").mkdir()  # left by a run killed while replacing it
    with torch.no_grad():
        model.weight.fill_(2.0)
    path = save_checkpoint(
        accelerator, str(tmp_path), 4, {"global_step": 4}, total_limit=1, name="checkpoint-best"
    )
    assert path == str(tmp_path / "checkpoint-best")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-best"]
    with torch.no_grad():
        model.weight.zero_()
    assert load_checkpoint(accelerator, path) == {"global_step": 4}
    assert torch.equal(model.weight, torch.full((2, 2), 2.0))


@pytest.mark.parametrize("with_schedule", [True, False])
def test_resume_applies_the_runs_learning_rate_and_betas_and_keeps_the_schedules_progress(with_schedule):
    PartialState(cpu=True)  # the changed settings are logged through accelerate's logger
    parameters = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam(
        [{"params": parameters[:1]}, {"params": parameters[1:]}], lr=1e-3, betas=(0.5, 0.9)
    )
    schedule = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 10) if with_schedule else None
    )
    for _ in range(4):
        optimizer.step()
        if schedule is not None:
            schedule.step()
    apply_optimizer_settings("generator", optimizer, schedule, 2e-4, [0.0, 0.99])
    factor = 0.6 if with_schedule else 1.0
    for group in optimizer.param_groups:
        assert group["betas"] == (0.0, 0.99) and group["initial_lr"] == 2e-4
        assert group["lr"] == pytest.approx(2e-4 * factor)
    if schedule is not None:
        assert schedule.base_lrs == [2e-4, 2e-4] and schedule.get_last_lr() == pytest.approx([2e-4 * 0.6] * 2)
        schedule.step()
        assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([2e-4 * 0.5] * 2)


def test_loading_warns_only_when_the_random_states_cannot_be_read(tmp_path, caplog):
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    path = save_checkpoint(accelerator, str(tmp_path), 3, {"global_step": 3})
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        assert load_checkpoint(accelerator, path) == {"global_step": 3}
    assert "cannot be read" not in caplog.text
    (tmp_path / "checkpoint-3" / "random_states_0.pkl").write_bytes(b"not a pickle")
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        assert load_checkpoint(accelerator, path) == {"global_step": 3}
    assert f"The random states of process 0 in {path} cannot be read (" in caplog.text
    assert caplog.messages[-1].endswith(
        "): the run resumes, but its random draws will differ from an uninterrupted run's."
    )


def test_latest_is_the_highest_step_and_skipped_folders_are_named(tmp_path, caplog):
    PartialState(cpu=True)
    for step in (5, 40, 300):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "training_state.json").write_text("{}")
    assert find_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-300")
    (tmp_path / "checkpoint-400.partial").mkdir()
    (tmp_path / "checkpoint-500").mkdir()
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        assert find_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-300")
    assert "(a run was stopped while writing them): checkpoint-400.partial, checkpoint-500" in caplog.text


def test_resume_warns_when_the_runs_optimizer_settings_replace_the_checkpoints(caplog):
    PartialState(cpu=True)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, betas=(0.5, 0.9))
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        apply_optimizer_settings("generator", optimizer, None, 1e-3, (0.5, 0.9))
    assert "Resuming with" not in caplog.text
    # Mid-schedule the current lr is below the run's: the saved setting is the schedule's initial lr.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 10)
    for _ in range(4):
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.6e-3)
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        apply_optimizer_settings("generator", optimizer, schedule, 1e-3, (0.5, 0.9))
    assert "Resuming with" not in caplog.text
    with caplog.at_level("WARNING", logger="smart_hf.training.checkpoints"):
        apply_optimizer_settings("generator", optimizer, None, 2e-4, (0.5, 0.9))
    assert (
        "generator learning rate 0.0002 and betas (0.5, 0.9) of this run; the checkpoint had 0.001"
        in caplog.text
    )


def test_a_runs_identity_is_its_options_as_run_json_records_them_and_its_id_ignores_key_order():
    identity = run_identity({"score": Path("/scores/a"), "seed": 1, "logging_steps": 10}, ["logging_steps"])
    assert identity == {"score": "/scores/a", "seed": 1}  # paths as strings, changeable options dropped
    assert run_id(identity) == run_id({"seed": 1, "score": "/scores/a"})  # key order does not matter
    assert run_id(identity) != run_id({"score": "/scores/a", "seed": 2}) and len(run_id(identity)) == 12


def test_a_used_folder_is_refused_with_the_runs_id_its_first_five_outputs_and_the_remedies(tmp_path):
    accelerator = Accelerator(cpu=True)
    claim_output_dir(accelerator, str(tmp_path), {"seed": 1}, resume=False, overwrite=False)  # empty: claimed
    for step in range(1, 7):
        (tmp_path / f"checkpoint-{step}").mkdir()
    remedies = (
        "Pass --resume_from_checkpoint latest to continue it, --overwrite_output_dir to delete them and "
        "start anew, or choose another --output_dir."
    )
    first_five = ", ".join(f"checkpoint-{step}" for step in range(1, 6))
    with pytest.raises(ValueError) as refused:
        claim_output_dir(accelerator, str(tmp_path), {"seed": 1}, resume=False, overwrite=False)
    expected = f"{tmp_path} holds the outputs of run {run_id({'seed': 1})} ({first_five}, …). {remedies}"
    assert str(refused.value) == expected
    (tmp_path / "run.json").unlink()
    (tmp_path / "checkpoint-6").rmdir()
    with pytest.raises(ValueError) as refused:
        claim_output_dir(accelerator, str(tmp_path), {"seed": 1}, resume=False, overwrite=False)
    assert str(refused.value) == f"{tmp_path} holds the outputs of a run ({first_five}). {remedies}"


def test_resuming_with_other_options_is_refused_naming_the_first_six_changes_and_run_json_records_the_run(
    tmp_path,
):
    accelerator = Accelerator(cpu=True)
    old = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1, "kept": 0, "only_old": 1}
    claim_output_dir(accelerator, str(tmp_path), old, resume=False, overwrite=False)
    assert json.loads((tmp_path / "run.json").read_text()) == {"run_id": run_id(old), "options": old}
    (tmp_path / "checkpoint-1").mkdir()
    new = {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2, "f": 2, "g": 2, "kept": 0}
    with pytest.raises(ValueError) as refused:
        claim_output_dir(accelerator, str(tmp_path), new, resume=True, overwrite=False)
    changes = ", ".join(f"--{key} 1 → 2" for key in "abcdef")  # sorted; the 7th (g) and only_old left out
    assert str(refused.value) == (
        f"{tmp_path} holds run {run_id(old)}, trained with other options ({changes}); only learning rates, "
        "betas, the number of steps and logging may change on a resume. Resume with the run's options, or "
        "start anew with --overwrite_output_dir or another --output_dir."
    )
    only_removed = {key: value for key, value in old.items() if key != "only_old"}
    with pytest.raises(ValueError, match=r"other options \(--only_old 1 → None\)"):
        claim_output_dir(accelerator, str(tmp_path), only_removed, resume=True, overwrite=False)
