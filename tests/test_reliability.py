"""Nothing lost, nothing silently wrong: non-finite guards, checksums, safe loading, run-folder
locks, resume checks, crash-safe checkpoints (the short cases of benchmarks/faults.py)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import write_tiny_chunk, write_tiny_expert, write_tiny_student

from mt_factored import cli
from mt_factored.artifacts.atomic import save_torch, temp_path
from mt_factored.artifacts.checksums import MANIFEST_NAME, read_manifest, verify_listed
from mt_factored.artifacts.lock import FolderBusyError, FolderLock
from mt_factored.artifacts.safe_pickle import PickleRefusedError
from mt_factored.constants import PACKAGE_ASSETS_DIR, SHIPPED_CHECKPOINTS_DIR
from mt_factored.data import WindowDataset, prepare, read_chunk
from mt_factored.data.shards import ShardedDataset
from mt_factored.data.store import store_from_chunks
from mt_factored.errors import MismatchError, NonFiniteError, WriteError
from mt_factored.expert.resolve import load_expert
from mt_factored.student import FactoredStudent
from mt_factored.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointReadError,
    find_resume_checkpoint,
)

CARTPOLE, REACHER = 8, 4


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    data = root / "chunks"
    write_tiny_chunk(
        data / "chunk_0.pt",
        task_ids={CARTPOLE: 2, REACHER: 2},
        action_dims={CARTPOLE: 1, REACHER: 2},
        obs_dims={CARTPOLE: 5, REACHER: 6},
    )
    return {"expert": write_tiny_expert(root / "expert.pt"), "data": data}


def train(assets, run_dir: Path, *extra: str, expert: Path | None = None):
    from mt_factored.train import run

    overrides = [
        "recipe=smoke",
        "name=test",
        f"expert={expert or assets['expert']}",
        "expert_model_size=auto",
        f"data={assets['data']}",
        "tasks=[cartpole-balance,reacher-easy]",
        f"run_dir={run_dir}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "eval.at_end=false",
        "trainer.max_steps=2",
        "checkpoint.every_n_steps=1",
        *extra,
    ]
    return run(cli.compose("train", overrides))


def marker_payload(marker: Path) -> object:
    """An object whose unpickling writes ``marker`` (what a malicious .pt would do)."""

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    return Payload()


# ------------------------------------------------------------------------ non-finite
def test_nan_loss_stops_training_naming_the_step_and_the_shard(assets, tmp_path) -> None:
    expert = tmp_path / "nan-expert.pt"
    state = torch.load(assets["expert"], weights_only=True)
    state["model"]["_encoder.state.0.weight"].fill_(float("nan"))
    torch.save(state, expert)
    with pytest.raises(NonFiniteError) as info:
        train(assets, tmp_path / "run", expert=expert)
    message = info.value.one_line()
    assert "non-finite loss at step 0" in message
    assert f"{assets['data'] / 'chunk_0.pt'}: episodes [" in message
    assert not list((tmp_path / "run").rglob("*.ckpt"))  # nothing of it was written


def test_a_non_finite_model_is_never_written_as_a_checkpoint(tmp_path) -> None:
    io = AtomicCheckpointIO()
    good = {"state_dict": {"w": torch.ones(3)}, "global_step": 1}
    io.save_checkpoint(good, tmp_path / "last.ckpt")
    bad = {"state_dict": {"w": torch.tensor([1.0, float("inf")])}, "global_step": 2}
    with pytest.raises(NonFiniteError, match=r"last\.ckpt.*\(w\)"):
        io.save_checkpoint(bad, tmp_path / "last.ckpt")
    assert io.load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 1  # the old one stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left


def test_save_pretrained_and_push_refuse_a_non_finite_student(tmp_path) -> None:
    student = FactoredStudent.from_pretrained(write_tiny_student(tmp_path / "ok"))
    name, param = next(iter(student.named_parameters()))
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match=name.replace(".", r"\.")):
        student.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    ckpt = tmp_path / "nan.ckpt"  # a run's checkpoint that diverged (written by older code)
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    hparams = {"student": student.config.to_dict(), "distill": {}, "optim": {}, "seed": 0}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "global_step": 3}, ckpt)
    out = subprocess.run(
        [sys.executable, "-m", "mt_factored.hub", "push", f"checkpoint={ckpt}", "repo_id=a/b"]
        + ["--dry-run", f"out={tmp_path / 'push'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: refusing to load the student of") and name in line
    assert not (tmp_path / "push").exists()


def test_windows_with_nan_outside_the_unused_slot_are_refused_naming_the_shard(
    assets, tmp_path
) -> None:
    prepared = prepare(assets["data"], tmp_path / "prepared", progress=False)
    stream = WindowDataset(prepared, batch_size=64, horizon=3, seed=0)
    stream.batch(0)  # the NaN in action[:, 0] / reward[:, 0] (the unused slot) is never read
    obs_file = next(prepared.glob("*.obs.npy"))
    obs = np.load(obs_file, mmap_mode="r+")
    obs[1, :, 0] = np.nan  # flipped bytes that decode as NaN, in every frame of episode 1
    obs.flush()
    del obs
    stream = WindowDataset(ShardedDataset(prepared), batch_size=64, horizon=3, seed=0)
    with pytest.raises(NonFiniteError, match=rf"non-finite obs in {obs_file} \(episode 1 "):
        stream.batch(0)


# ------------------------------------------------------------------------ checksums
def test_shipped_experts_are_listed_in_their_manifests() -> None:
    for folder, pattern in (
        (SHIPPED_CHECKPOINTS_DIR, "*/*.pt"),
        (PACKAGE_ASSETS_DIR, "smoke/*.pt"),
    ):
        listed = read_manifest(folder / MANIFEST_NAME)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern))
        assert sorted(listed) == files
        for name in files:
            assert verify_listed(folder / name) == listed[name]


def test_a_tampered_shipped_expert_is_refused(tmp_path) -> None:
    shipped = tmp_path / "checkpoints"
    (shipped / "quickstart").mkdir(parents=True)
    shutil.copy(SHIPPED_CHECKPOINTS_DIR / MANIFEST_NAME, shipped / MANIFEST_NAME)
    path = shipped / "quickstart" / "cup-catch.pt"
    raw = bytearray((SHIPPED_CHECKPOINTS_DIR / "quickstart" / "cup-catch.pt").read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 400] = bytes(400)  # inside a tensor: still loads
    path.write_bytes(bytes(raw))
    with pytest.raises(MismatchError, match=rf"{path}: its SHA-256 .* recorded in "):
        load_expert({"cup-catch": str(path)})


def test_resume_refuses_a_changed_expert_file_unless_forced(assets, tmp_path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt", seed=0)
    train(assets, tmp_path / "run", expert=expert)
    write_tiny_expert(expert, seed=1)  # same architecture, other weights
    with pytest.raises(MismatchError, match=r"expert file of 'expert': SHA-256"):
        train(assets, tmp_path / "run", "trainer.max_steps=3", expert=expert)
    train(assets, tmp_path / "run", "trainer.max_steps=3", "resume=force", expert=expert)
    found = find_resume_checkpoint(tmp_path / "run" / "checkpoints")
    assert found is not None and found[1]["global_step"] == 3


# ------------------------------------------------------------------------ safe loading
def test_a_pickle_payload_given_as_expert_is_refused_and_does_not_run(assets, tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(2), "x": marker_payload(marker)}}, path)
    with pytest.raises(PickleRefusedError, match=r"evil\.pt: the pickle calls builtins\.exec"):
        train(assets, tmp_path / "run", expert=path)
    with pytest.raises(PickleRefusedError):
        load_expert({"cartpole-balance": str(path)})
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 (the opt-in runs it; the file is no expert)
        load_expert(str(path), trust_pickle=True)
    assert marker.exists()  # trust_pickle=true does unpickle fully: an explicit opt-in


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-format"])
def test_a_pickle_payload_in_a_data_chunk_is_refused_and_does_not_run(tmp_path, zipped) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "chunks" / "chunk_0.pt"
    path.parent.mkdir()
    data = {"obs": torch.zeros(1, 5, 24), "x": marker_payload(marker)}
    torch.save(data, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(PickleRefusedError, match=r"chunk_0\.pt: the pickle calls builtins\.exec"):
        read_chunk(path)
    if zipped:  # the training stream's reader (prepare's too)
        with pytest.raises(PickleRefusedError, match=r"chunk_0\.pt"):
            store_from_chunks(path.parent)
    assert not marker.exists()


# ------------------------------------------------------------------------ run folder
def test_a_second_run_on_a_folder_is_refused_and_a_dead_holders_lock_taken_over(
    tmp_path, caplog
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mt_factored.artifacts.lock import FolderLock; "
            f"FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=rf"in use by PID {holder.pid} on "):
            FolderLock(tmp_path, what="run_dir").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with caplog.at_level(logging.WARNING), FolderLock(tmp_path) as lock:
        assert lock.previous["pid"] == holder.pid  # the killed run's lock, taken over
    assert f"took over the stale lock of PID {holder.pid}" in caplog.text
    assert not (tmp_path / "run.lock").exists()  # released at the end


def test_a_run_is_refused_while_another_holds_its_folder(assets, tmp_path) -> None:
    with FolderLock(tmp_path / "run"):
        with pytest.raises(FolderBusyError, match=rf"run_dir={tmp_path / 'run'} is in use by PID"):
            train(assets, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_a_read_only_run_folder_is_one_clear_error(assets, tmp_path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="cannot be written"):
            train(assets, run_dir)
    finally:
        run_dir.chmod(0o700)


def test_resume_with_a_changed_config_is_refused_with_a_diff_unless_forced(
    assets, tmp_path
) -> None:
    run_dir = tmp_path / "run"
    train(assets, run_dir)
    with pytest.raises(MismatchError) as info:
        train(assets, run_dir, "trainer.max_steps=3", "optim.lr=0.5", "student.latent_dim=8")
    message = info.value.one_line()
    assert "optim.lr: 0.0001 -> 0.5" in message and "student.latent_dim: " in message
    assert "resume=force" in message
    train(assets, run_dir, "trainer.max_steps=3", "optim.lr=0.5", "resume=force")
    found = find_resume_checkpoint(run_dir / "checkpoints")
    assert found[1]["global_step"] == 3
    assert found[1]["mt_factored_run"]["config"]["optim"]["lr"] == 0.5


# ------------------------------------------------------------------------ checkpoints
def test_a_corrupt_last_ckpt_falls_back_to_the_newest_intact_step_checkpoint(
    assets, tmp_path, caplog
) -> None:
    run_dir = tmp_path / "run"
    train(assets, run_dir, "trainer.max_steps=3", "checkpoint.keep=2")
    folder = run_dir / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "last.ckpt",
        "step00000002.ckpt",
        "step00000003.ckpt",
    ]
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    (folder / "step00000003.ckpt").write_bytes(b"")  # and the newest step one empty
    with caplog.at_level(logging.WARNING):
        path, ckpt = find_resume_checkpoint(folder)
    assert path.name == "step00000002.ckpt" and ckpt["global_step"] == 2
    assert f"checkpoint {last}" in caplog.text and f"resuming from {path} instead" in caplog.text
    # A leftover of a killed write is removed at the next start; the run resumes and goes on,
    # keeping the 2 newest step checkpoints (and, as Lightning does, the one it resumed from)
    # with no -v1 duplicate.
    leftover = temp_path(folder / "last.ckpt")
    leftover.write_bytes(b"partial")
    train(assets, run_dir, "trainer.max_steps=5", "checkpoint.keep=2")
    assert sorted(p.name for p in folder.iterdir()) == [
        "last.ckpt",
        "step00000002.ckpt",
        "step00000004.ckpt",
        "step00000005.ckpt",
    ]
    assert find_resume_checkpoint(folder)[1]["global_step"] == 5
    for name in ("step00000002.ckpt", "step00000004.ckpt"):
        (folder / name).unlink()
    last.write_bytes(b"")
    (folder / "step00000005.ckpt").write_bytes(b"PK\x03\x04")
    with pytest.raises(CheckpointReadError, match=r"no intact checkpoint .*last\.ckpt"):
        find_resume_checkpoint(folder)


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    save_torch({"state_dict": {}, "global_step": 1}, path)

    write_bytes = Path.write_bytes

    def full_disk(self: Path, data) -> int:
        write_bytes(self, bytes(data)[:10])  # part of it, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(WriteError, match=r"could not write checkpoint .*No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.ones(1)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_failed_write_of_any_file_is_one_write_error_and_leaves_no_temp(tmp_path) -> None:
    from mt_factored.artifacts.atomic import atomic_write

    target = tmp_path / "index.json"
    target.write_text("old")

    def full_disk(tmp: Path) -> None:
        tmp.write_text("par")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match=rf"could not write {target} \(No space left"):
        atomic_write(target, full_disk)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_atomic_writes_get_the_umask_mode_even_from_0600_writers(tmp_path):
    """safetensors' save_file creates its file 0600; a published model folder must be as
    readable as any file the process writes."""
    import os
    import stat

    from safetensors.torch import save_file

    from mt_factored.artifacts.atomic import atomic_write

    target = tmp_path / "model.safetensors"
    atomic_write(target, lambda p: save_file({"w": torch.zeros(2)}, p))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
