"""Publishing and fetching students and experts (offline: HF_HUB_OFFLINE=1, no network).

The Hub is replaced by what it leaves on disk (folders laid out as ``hf download
--local-dir`` and as the HF cache) and by recording the calls an upload would make.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub import constants as hf_constants
from tiny import write_tiny_expert

from mt_factored import cli
from mt_factored.constants import STUDENT_FORMAT_VERSION
from mt_factored.hub import ArtifactFormatError, ArtifactNotFoundError, NewerFormatWarning
from mt_factored.hub_commands import main as hub_main
from mt_factored.student import FactoredStudent, StudentConfig

FILES = {"README.md", "config.json", "model.safetensors"}
TASKS = ["walker-walk", "pendulum-swingup", "reacher-easy", "reacher-three-easy"]
WALKER_PAIRS = ((0, 1), (2, 3), (4, 5))
SHA = "0123456789abcdef0123456789abcdef01234567"


# --------------------------------------------------------------------------- helpers
def tiny_config(**sizes) -> StudentConfig:
    base = dict(task_dim=8, agent_dim=4, enc_dim=32, latent_dim=16, mlp_dim=16)
    return StudentConfig.for_task_set(
        TASKS, partitions={"walker-walk": WALKER_PAIRS}, **{**base, **sizes}
    )


def random_student(seed: int = 0) -> FactoredStudent:
    """A student whose every weight is random (the reward and value heads start at 0)."""
    torch.manual_seed(seed)
    student = FactoredStudent(tiny_config())
    with torch.no_grad():
        for p in student.parameters():
            p.normal_(0, 0.5)
    return student.eval()


@torch.no_grad()
def outputs(model: FactoredStudent) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    task = torch.tensor([0, 1, 2, 3])
    obs = torch.randn(4, model.config.obs_dim, generator=gen)
    action = torch.rand(4, model.config.action_dim, generator=gen) * 2 - 1
    cond = model.condition(task)
    s = model.encode(obs, task)
    a = model.split_actions(action, task)
    return (s, *model.step(s, a, cond), model.q(s, a, cond), model.pi(s, cond).mean)


def assert_same_student(a: FactoredStudent, b: FactoredStudent) -> None:
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    for x, y in zip(outputs(a), outputs(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def fake_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = SHA) -> Path:
    """The HF cache layout: blobs by hash, snapshots/<commit>/... symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache that huggingface_hub uses by default (it reads the env at import)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory) -> tuple[Path, FactoredStudent]:
    """A real Lightning checkpoint of DistillModule holding a random student."""
    import lightning as L

    from mt_factored.training.module import DistillModule

    module = DistillModule(
        student=dataclasses.asdict(tiny_config()),
        distill={},
        optim={"lr": 3e-4},
        seed=7,
    )
    module.student.load_state_dict(random_student(3).state_dict())
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, module.student.eval()


def results_json(path: Path) -> Path:
    """An evaluation output as mt_factored.evaluate writes it."""
    from mt_factored.analysis.evaluation import write_results_json
    from mt_factored.planning.episodes import EpisodeStats

    def stats(task: str, returns: list[float], ms: float) -> EpisodeStats:
        return EpisodeStats(task, returns, ms * 4, 4, plan_ms_single_env=ms)

    write_results_json(
        path,
        {
            "student": {
                "walker-walk": stats("walker-walk", [900.0, 880.0], 2.5),
                "pendulum-swingup": stats("pendulum-swingup", [700.0, 720.0], 1.5),
            },
            "expert": {
                "walker-walk": stats("walker-walk", [950.0, 950.0], 50.0),
                "pendulum-swingup": stats("pendulum-swingup", [800.0, 800.0], 45.0),
            },
        },
    )
    return path


def front_matter_of(text: str) -> dict:
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(meta, dict)
    return meta


def front_matter(readme: Path) -> dict:
    return front_matter_of(readme.read_text())


def flip_byte(path: Path, offset_from_end: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------- save -> load
def test_save_load_round_trip_is_exact(tmp_path) -> None:
    student = random_student()
    student.save_pretrained(tmp_path / "student")
    assert {p.name for p in (tmp_path / "student").iterdir()} == FILES  # no staging left
    loaded = FactoredStudent.from_pretrained(tmp_path / "student")
    assert not loaded.training
    assert_same_student(student, loaded)

    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["format_version"] == STUDENT_FORMAT_VERSION
    assert config["library_name"] == "mt_factored" and config["library_version"]
    for field in dataclasses.fields(StudentConfig):
        assert field.name in config
    assert [(t["id"], t["name"]) for t in config["tasks"]] == list(enumerate(TASKS))
    assert config["tasks"][0]["agents"] == [list(g) for g in WALKER_PAIRS]
    assert config["embodiments"]["reacher-2dof"]["tasks"] == ["reacher-easy"]
    assert config["embodiments"]["reacher-3dof"]["action_dim"] == 3


def test_download_folder_and_hf_cache_resolve(tmp_path, hf_cache) -> None:
    student = random_student()
    saved = tmp_path / "saved"
    student.save_pretrained(saved)
    files = {p.name: p for p in saved.iterdir()}

    # `hf download ORG/NAME --local-dir X` gives X with the repo's files (and its own
    # bookkeeping under X/.cache/huggingface/).
    local = tmp_path / "X"
    (local / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (local / ".cache" / "huggingface" / "download" / "config.json.metadata").write_text(SHA)
    for name, src in files.items():
        (local / name).write_bytes(src.read_bytes())
    assert_same_student(student, FactoredStudent.from_pretrained(str(local)))

    fake_hf_cache(hf_cache, "me/tiny-student", files)
    assert_same_student(student, FactoredStudent.from_pretrained("me/tiny-student"))
    assert_same_student(student, FactoredStudent.from_pretrained("me/tiny-student", revision=SHA))

    other = tmp_path / "other-cache"
    fake_hf_cache(other, "me/elsewhere", files)
    loaded = FactoredStudent.from_pretrained("me/elsewhere", cache_dir=other)
    assert_same_student(student, loaded)

    with pytest.raises(ArtifactNotFoundError, match="hf download me/missing"):
        FactoredStudent.from_pretrained("me/missing")
    with pytest.raises(ArtifactNotFoundError, match="HF_HUB_OFFLINE"):
        FactoredStudent.from_pretrained("me/tiny-student", revision="f" * 40)


# ------------------------------------------------------------------------ bad inputs
@pytest.fixture
def saved(tmp_path) -> Path:
    folder = tmp_path / "student"
    random_student().save_pretrained(folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file_is_named(saved, name) -> None:
    (saved / name).unlink()
    with pytest.raises(ArtifactNotFoundError, match=f"has no {name}"):
        FactoredStudent.from_pretrained(saved)


def test_format_versions(saved) -> None:
    edit_config(saved, format_version=STUDENT_FORMAT_VERSION + 1)
    with pytest.raises(ArtifactFormatError, match="newer than mt_factored"):
        FactoredStudent.from_pretrained(saved)
    edit_config(saved, format_version=None)
    with pytest.raises(ArtifactFormatError, match="no 'format_version'"):
        FactoredStudent.from_pretrained(saved)
    # A newer minor version may add fields: loaded, with a warning naming them.
    edit_config(saved, format_version=f"{STUDENT_FORMAT_VERSION}.3", future_field={"x": 1})
    with pytest.warns(NewerFormatWarning, match="future_field"):
        loaded = FactoredStudent.from_pretrained(saved)
    assert loaded.config == random_student().config


def test_tampered_weights(saved) -> None:
    flip_byte(saved / "model.safetensors")
    with pytest.raises(ArtifactFormatError, match="weights were modified"):
        FactoredStudent.from_pretrained(saved)
    # Without a recorded checksum, an unreadable file is still reported as such.
    edit_config(saved, weights_sha256=None)
    (saved / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(ArtifactFormatError, match="not a readable safetensors file"):
        FactoredStudent.from_pretrained(saved)


def test_config_weights_mismatch(saved) -> None:
    edit_config(saved, mlp_dim=32)
    with pytest.raises(ArtifactFormatError, match=r"do not match the architecture.*shape"):
        FactoredStudent.from_pretrained(saved)


def test_invalid_configs(saved) -> None:
    edit_config(saved, latent_dim=12)  # not a multiple of simnorm_dim
    with pytest.raises(
        ArtifactFormatError, match="not a valid factored-student config.*latent_dim"
    ):
        FactoredStudent.from_pretrained(saved)
    edit_config(saved, model_type="tdmpc2-expert")
    with pytest.raises(ArtifactFormatError, match="describes a 'tdmpc2-expert'"):
        FactoredStudent.from_pretrained(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ArtifactFormatError, match="not valid JSON"):
        FactoredStudent.from_pretrained(saved)


# ------------------------------------------------------------------------ model card
def test_model_card_metadata_and_results(tmp_path, lightning_ckpt, capsys) -> None:
    ckpt, _ = lightning_ckpt
    out = tmp_path / "out"
    args = ["push", f"checkpoint={ckpt}", "repo_id=me/tiny", f"out={out}"]
    assert hub_main([*args, f"results={results_json(tmp_path / 'eval.json')}", "--dry-run"]) == 0
    readme = out / "README.md"

    meta = front_matter(readme)
    assert meta["library_name"] == "mt_factored" and meta["license"] == "mit"
    assert {"robotics", "reinforcement-learning", "world-model"} <= set(meta["tags"])
    assert meta["datasets"] == ["nicklashansen/tdmpc2"]
    card = ModelCard.load(readme)  # huggingface_hub's own parser accepts it
    assert {r.dataset_name: r.metric_value for r in card.data.eval_results} == {
        "walker-walk": "890.00 +/- 10.00",
        "pendulum-swingup": "710.00 +/- 10.00",
    }
    body = readme.read_text()
    # student vs expert: returns, ratio (890/950, 710/800), ms/step, speedup (50/2.5, 45/1.5)
    assert "| walker-walk | 950.0 ± 0.0 | 890.0 ± 10.0 | 0.94 | 50.0 | 2.5 | 20x |" in body
    assert "| pendulum-swingup | 800.0 ± 0.0 | 710.0 ± 10.0 | 0.89 | 45.0 | 1.5 | 30x |" in body
    assert "| cpu |" in body and f"| torch | {torch.__version__} |" in body
    assert "hf download me/tiny --local-dir checkpoints/tiny" in body
    assert "lr: 0.0003" in body and "seed: 7" in body  # training settings of the checkpoint

    # Hardware recorded with the results wins over the machine that writes the card.
    recorded = json.loads((tmp_path / "eval.json").read_text())
    recorded["_meta"] = {"hardware": {"cpu": "Test CPU 9000", "torch threads": "2"}}
    (tmp_path / "eval.json").write_text(json.dumps(recorded))
    assert hub_main([*args, f"results={tmp_path / 'eval.json'}", "--dry-run"]) == 0
    body = readme.read_text()
    assert "recorded with the results" in body and "| cpu | Test CPU 9000 |" in body

    # Without results the card says how to add them and has no model-index.
    assert hub_main([*args, "datasets=[me/my-data]", "--dry-run"]) == 0
    assert "model-index" not in front_matter(readme)
    assert front_matter(readme)["datasets"] == ["me/my-data"]
    assert "results=results.json" in readme.read_text()


# ---------------------------------------------------------------------------- push
@pytest.fixture
def no_upload(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("no Hub call expected")

    for name in ("create_repo", "create_branch", "create_commit"):
        monkeypatch.setattr(HfApi, name, refuse)


def test_push_dry_run_writes_folder_and_lists_files(
    tmp_path, lightning_ckpt, no_upload, capsys
) -> None:
    ckpt, student = lightning_ckpt
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"x")  # not a model folder: refused, untouched
    args = ["push", f"checkpoint={ckpt}", "repo_id=me/tiny", f"out={out}", "--dry-run"]
    assert hub_main(args) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert (out / "stale.bin").exists()

    (out / "stale.bin").unlink()
    assert hub_main(args) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == FILES
    for name in FILES:
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() in printed
    assert "https://huggingface.co/me/tiny" in printed and "nothing uploaded" in printed
    assert_same_student(student, FactoredStudent.from_pretrained(out))

    # A second run replaces the folder (no stale files), and a folder is a valid checkpoint.
    again = [
        "push",
        f"checkpoint={out}",
        "repo_id=me/tiny",
        f"out={tmp_path / 'again'}",
        "--dry-run",
    ]
    assert hub_main(again) == 0
    assert_same_student(student, FactoredStudent.from_pretrained(tmp_path / "again"))


class RecordingHub:
    """Stands in for the Hub's write API: records calls, keeps the uploaded bytes."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        self.hashes: dict[str, bytes] = {}
        self.fail_commit = fail_commit

    def install(self, monkeypatch) -> RecordingHub:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", (repo_id,), kwargs))
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, **kwargs):
            hub.calls.append(("create_branch", (repo_id,), kwargs))

        def create_commit(api, repo_id, operations, **kwargs):
            operations = list(operations)
            hub.calls.append(("create_commit", (repo_id, operations), kwargs))
            if hub.fail_commit:
                raise ConnectionError("connection reset by peer")
            for op in operations:  # what the real create_commit reads: bytes and their hash
                hub.uploaded[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
                hub.hashes[op.path_in_repo] = op.upload_info.sha256
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{SHA}",
                commit_message=kwargs["commit_message"],
                commit_description="",
                oid=SHA,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        return self


def test_push_is_one_commit_of_every_file(tmp_path, lightning_ckpt, monkeypatch, capsys) -> None:
    ckpt, student = lightning_ckpt
    hub = RecordingHub().install(monkeypatch)
    args = ["push", f"checkpoint={ckpt}", "repo_id=me/tiny", "private=true", "revision=v1"]
    assert hub_main(args) == 0
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "create_commit"]
    assert hub.calls[0][2]["private"] is True and hub.calls[0][2]["exist_ok"] is True
    assert hub.calls[1][2]["branch"] == "v1"
    _, (repo_id, operations), kwargs = hub.calls[2]
    assert repo_id == "me/tiny" and kwargs["revision"] == "v1"
    assert {op.path_in_repo for op in operations} == FILES
    for name, data in hub.uploaded.items():  # the operations carry the hash of what they upload
        assert hub.hashes[name] == hashlib.sha256(data).digest()
    printed = capsys.readouterr().out
    assert f"https://huggingface.co/me/tiny/commit/{SHA}" in printed

    # What was uploaded is a complete student: lay it out as the download would.
    got = tmp_path / "downloaded"
    got.mkdir()
    for name, data in hub.uploaded.items():
        (got / name).write_bytes(data)
    assert_same_student(student, FactoredStudent.from_pretrained(got))


def test_failed_push_publishes_nothing(lightning_ckpt, monkeypatch, capsys) -> None:
    ckpt, _ = lightning_ckpt
    hub = RecordingHub(fail_commit=True).install(monkeypatch)
    assert hub_main(["push", f"checkpoint={ckpt}", "repo_id=me/tiny"]) == 2
    assert "Nothing was published" in capsys.readouterr().err
    assert [c[0] for c in hub.calls] == ["create_repo", "create_commit"]  # one commit, no retry


def test_push_refuses_offline(lightning_ckpt, monkeypatch, no_upload, capsys) -> None:
    ckpt, _ = lightning_ckpt
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert hub_main(["push", f"checkpoint={ckpt}", "repo_id=me/tiny"]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "--dry-run" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["push", "repo_id=me/x"], "missing mandatory value: checkpoint"),
        (["push", "checkpoint=a.ckpt", "repo_id=noslash"], "ORG/NAME"),
        (["push", "checkpoint=a.ckpt", "repo_id=me/x", "private=maybe"], "key private"),
        (["push", "checkpoint=a.ckpt", "repo_id=me/x", "colour=red"], "Key 'colour' not in"),
        (["upload"], "unknown command 'upload'"),
    ],
)
def test_push_usage_errors(args, message, capsys) -> None:
    assert hub_main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_checkpoints(tmp_path, no_upload, capsys) -> None:
    not_ckpt = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, not_ckpt)
    base = ["repo_id=me/x", "--dry-run", f"out={tmp_path / 'out'}"]
    assert hub_main(["push", f"checkpoint={not_ckpt}", *base]) == 2
    assert "not a checkpoint of mt_factored's DistillModule" in capsys.readouterr().err
    assert hub_main(["push", f"checkpoint={tmp_path / 'missing.ckpt'}", *base]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_entry_point_dry_run(tmp_path, saved) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "mt_factored.hub", "push", f"checkpoint={saved}"]
    proc = subprocess.run(
        [*cmd, "repo_id=me/cli", f"out={out}", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "model.safetensors" in proc.stdout and "nothing uploaded" in proc.stdout
    assert_same_student(random_student(), FactoredStudent.from_pretrained(out))


# --------------------------------------------------------------------------- experts
def test_expert_folder_round_trip(tmp_path, no_upload) -> None:
    from mt_factored.expert import TDMPC2Expert
    from mt_factored.expert.pretrained import expert_from_pretrained
    from mt_factored.expert.resolve import load_expert

    pt = write_tiny_expert(tmp_path / "mt30-tiny.pt", seed=2)
    out = tmp_path / "expert"
    cmd = ["push", f"checkpoint={pt}", "repo_id=me/expert", f"out={out}", "--dry-run"]
    assert hub_main(cmd) == 0
    assert {p.name for p in out.iterdir()} == FILES | {"mt30-tiny.pt"}
    assert json.loads((out / "config.json").read_text())["checkpoint"] == "mt30-tiny.pt"
    assert front_matter(out / "README.md")["library_name"] == "mt_factored"

    original = TDMPC2Expert.from_checkpoint(pt, model_size="auto")
    for loaded in (
        expert_from_pretrained(out),  # safetensors, no pickle
        load_expert(str(out / "mt30-tiny.pt"), model_size="auto"),  # the public layout
    ):
        assert loaded.config == original.config
        for (k, a), (_, b) in zip(
            original.state_dict().items(), loaded.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), k
    flip_byte(out / "model.safetensors")
    with pytest.raises(ArtifactFormatError, match="weights were modified"):
        expert_from_pretrained(out)
    with pytest.raises(ArtifactFormatError, match="describes a 'tdmpc2-expert'"):
        FactoredStudent.from_pretrained(out)


def test_public_expert_resolves_from_hf_cache(tmp_path, hf_cache) -> None:

    from mt_factored.expert import TDMPC2Expert
    from mt_factored.expert.resolve import ExpertNotFoundError, load_expert

    spec = cli.compose("train", overrides=["recipe=dmcontrol30", "name=x"]).expert
    assert spec == "hub:nicklashansen/tdmpc2/multitask/mt30-5M.pt"

    pt = write_tiny_expert(tmp_path / "mt30-5M.pt", seed=4)
    fake_hf_cache(hf_cache, "nicklashansen/tdmpc2", {"multitask/mt30-5M.pt": pt})
    original = TDMPC2Expert.from_checkpoint(pt, model_size="auto")
    for hub_spec in (spec, f"{spec}@{SHA}"):
        loaded = load_expert(hub_spec, model_size="auto")
        for (k, a), (_, b) in zip(
            original.state_dict().items(), loaded.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), k
    with pytest.raises(
        ExpertNotFoundError, match="nicklashansen/tdmpc2.*not in the Hugging Face cache"
    ):
        load_expert("hub:nicklashansen/tdmpc2/multitask/mt30-19M.pt", model_size="auto")


def test_a_modified_file_of_the_hf_cache_is_refused(tmp_path, hf_cache) -> None:
    """A cached LFS file is checked against the Hub's hash of it (its blob's name)."""
    from mt_factored.errors import MismatchError
    from mt_factored.expert.resolve import load_expert

    pt = write_tiny_expert(tmp_path / "mt30-5M.pt", seed=4)
    repo = fake_hf_cache(hf_cache, "nicklashansen/tdmpc2", {"multitask/mt30-5M.pt": pt})
    spec = "hub:nicklashansen/tdmpc2/multitask/mt30-5M.pt"
    load_expert(spec, model_size="auto")
    (blob,) = (repo / "blobs").iterdir()
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # inside a tensor: it would still load
    blob.write_bytes(bytes(raw))
    with pytest.raises(MismatchError, match="differs from the Hub's"):
        load_expert(spec, model_size="auto")
