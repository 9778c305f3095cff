"""Official chunk files: round trips, the fallback unpickler, and every bad input's error."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from mt_factored.data import ChunkFile, ChunkFormatError, read_chunk, validate_chunk, write_chunk
from mt_factored.tasks import get_task_set

MT30 = get_task_set("mt30")
FRAMES = 501


def episodes(tasks=(0, 4, 8, 4), dtype=torch.float32, seed=0, terminated=False) -> dict:
    """Random valid mt30 episodes in the official layout (padding, NaN slots)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(tasks)
    obs = torch.zeros(n, FRAMES, 24)
    action = torch.zeros(n, FRAMES, 6)
    for i, t in enumerate(tasks):
        obs[i, :, : MT30.obs_dims[t]] = torch.randn(FRAMES, MT30.obs_dims[t], generator=gen)
        action[i, :, : MT30.action_dims[t]] = torch.rand(FRAMES, MT30.action_dims[t], generator=gen)
    reward = torch.rand(n, FRAMES, generator=gen)
    action[:, 0] = float("nan")
    reward[:, 0] = float("nan")
    data = {
        "obs": obs.to(dtype),
        "action": action.to(dtype),
        "reward": reward.to(dtype),
        "task": torch.tensor(tasks, dtype=torch.int32)[:, None].expand(n, FRAMES).contiguous(),
    }
    if terminated:
        data["terminated"] = torch.zeros(n, FRAMES, dtype=torch.bool)
        data["terminated"][:, -1] = True
    return data


def assert_identical(a: dict, b: dict) -> None:
    """Same keys, dtypes, shapes and bytes (NaN included)."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        x, y = a[key].contiguous(), b[key].contiguous()
        assert torch.equal(x.view(torch.uint8), y.view(torch.uint8)), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_write_read_round_trip(tmp_path: Path, dtype: torch.dtype) -> None:
    data = episodes(dtype=dtype, terminated=dtype == torch.float16)
    path = write_chunk(tmp_path / "chunk_0.pt", data, num_tasks=30, action_dims=MT30.action_dims)
    assert_identical(read_chunk(path), data)
    assert_identical(ChunkFile(path).tensors(), data)  # the lazy reader agrees
    lazy = ChunkFile(path)
    assert torch.equal(torch.from_numpy(lazy.read("task", 1, 3)), data["task"][1:3])
    assert not list(tmp_path.glob("*.tmp"))


def test_written_chunk_is_a_tensordict_for_the_reference_loader(tmp_path: Path) -> None:
    path = write_chunk(tmp_path / "chunk_0.pt", episodes())
    loaded = torch.load(path, weights_only=False)  # what the reference code does
    assert isinstance(loaded, TensorDict)
    assert tuple(loaded.batch_size) == (4, FRAMES)
    assert loaded["task"].long()[:, 0].tolist() == [0, 4, 8, 4]


def test_reads_files_written_by_the_real_tensordict(tmp_path: Path) -> None:
    data = episodes(seed=3)
    path = tmp_path / "chunk_0.pt"
    torch.save(TensorDict(data, batch_size=[4, FRAMES]), path)
    assert_identical(read_chunk(path), data)


def _save_legacy(path: Path, data: dict, zipped: bool) -> None:
    """A chunk pickled the way old tensordict releases did: an importable-then, gone-now class
    whose instance state holds `_tensordict`, restored by BUILD (no __reduce__)."""
    module = types.ModuleType("tensordict._removed_legacy")

    class TensorDict:  # noqa: D401 - stands in for the removed class
        pass

    TensorDict.__module__, TensorDict.__qualname__ = module.__name__, "TensorDict"
    module.TensorDict = TensorDict
    obj = TensorDict()
    obj.__dict__.update(
        {
            "_tensordict": data,
            "_batch_size": torch.Size([4, FRAMES]),
            "_device": None,
            "_is_shared": False,
        }
    )
    sys.modules[module.__name__] = module
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=zipped)
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-format"])
def test_fallback_unpickler_reads_old_tensordict_files(tmp_path: Path, zipped: bool) -> None:
    data = episodes(seed=1)
    path = tmp_path / "old.pt"
    _save_legacy(path, data, zipped)
    with pytest.raises(ModuleNotFoundError):  # the real unpickler cannot open it ...
        torch.load(path, weights_only=False)
    assert_identical(read_chunk(path), data)  # ... the fallback rebuilds the tensors


def test_fallback_when_tensordict_is_not_importable(tmp_path: Path, monkeypatch) -> None:
    data = episodes(seed=2)
    path = write_chunk(tmp_path / "chunk_0.pt", data)
    monkeypatch.setitem(sys.modules, "tensordict._reductions", None)  # import now fails
    monkeypatch.setitem(sys.modules, "tensordict", None)
    with pytest.raises(ImportError):
        torch.load(path, weights_only=False)
    assert_identical(read_chunk(path), data)


def test_zero_in_unused_slot_is_accepted_with_a_warning(caplog) -> None:
    data = episodes()
    data["action"][:, 0] = 0.0
    with caplog.at_level(logging.WARNING):
        validate_chunk(data, name="zeros.pt")
    assert "action[:, 0] holds 0 instead of NaN" in caplog.text


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, index, value):
    def edit(d):
        d[key][index] = value

    return edit


def _replace(key, fn):
    def edit(d):
        d[key] = fn(d[key])

    return edit


BAD = {
    "missing key": (_drop("reward"), r"key 'reward': expected the keys"),
    "obs not 3-d": (_replace("obs", lambda x: x[..., 0]), r"key 'obs': expected shape"),
    "action frames differ": (
        _replace("action", lambda x: x[:, :-1]),
        r"key 'action': expected shape",
    ),
    "obs_dim": (_replace("obs", lambda x: x[..., :23]), r"key 'obs': expected obs_dim 24"),
    "integer obs": (_replace("obs", lambda x: x.long()), r"key 'obs': expected dtype float32"),
    "action slot": (_set("action", (1, 0, 0), 0.5), r"key 'action': expected NaN .*episode 1"),
    "reward slot": (_set("reward", (2, 0), 1.0), r"key 'reward': expected NaN .*episode 2"),
    "NaN in obs": (_set("obs", (3, 7, 0), float("nan")), r"key 'obs': expected finite.*episode 3"),
    "NaN in reward": (_set("reward", (0, 9), float("nan")), r"key 'reward': expected finite"),
    "task out of range": (
        _set("task", (2, slice(None)), 30),
        r"key 'task': expected task ids in \[0, 30\)",
    ),
    "negative task": (_set("task", (0, slice(None)), -1), r"key 'task': expected task ids in"),
    "task changes": (
        _set("task", (1, 5), 0),
        r"key 'task': expected one task id per episode.*episode 1",
    ),
    "action padding": (
        _set("action", (2, 4, 3), 0.2),
        r"key 'action': expected 0 in the padded.*task 8",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_error_names_file_key_and_expectation(tmp_path: Path, case: str) -> None:
    edit, message = BAD[case]
    data = episodes()
    edit(data)
    path = tmp_path / "bad.pt"  # batch size [episodes]: frames may differ between keys here
    torch.save(TensorDict(data, batch_size=[4]), path)
    with pytest.raises(ChunkFormatError, match=message) as err:
        read_chunk(path, num_tasks=30, action_dims=MT30.action_dims, obs_dim=24, action_dim=6)
    assert str(path) in str(err.value)


def test_write_chunk_refuses_invalid_data(tmp_path: Path) -> None:
    data = episodes()
    data["reward"][0, 0] = 2.0
    with pytest.raises(ChunkFormatError, match="unused slot"):
        write_chunk(tmp_path / "chunk_0.pt", data)
    assert not (tmp_path / "chunk_0.pt").exists()


def test_not_a_chunk_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a pickle")
    with pytest.raises(ChunkFormatError, match="notes.pt"):
        read_chunk(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_chunk(tmp_path / "missing.pt")
