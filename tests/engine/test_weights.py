"""Downloads take fp16 safetensors where a repository folder has them, plain safetensors where it has not, never
pickles; a snapshot with configs alone is missing; loading picks the variant each folder has on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.models import ModelMissing, ModelRegistry, hub_files_for
from engine.settings import EngineSettings
from engine.tiny import tiny_root
from engine.weights import download, missing_models

from .conftest import tiny_settings

CONFIGS = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer_2/vocab.json"]
CONFIGS += [f"{c}/config.json" for c in ("text_encoder", "text_encoder_2", "unet", "vae")]
SDXL_REPO = CONFIGS + [  # stabilityai/sdxl-turbo's layout: fp16 beside float32 safetensors, pickles, a single file
    "sd_xl_turbo_1.0_fp16.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder_2/model.safetensors",
    "text_encoder_2/model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.fp16.bin",
    "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]
PLAIN_REPO = CONFIGS + [  # a community model: plain safetensors (and pickles) only
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder_2/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "vae/diffusion_pytorch_model.safetensors",
]
MIXED_REPO = CONFIGS + [  # fp16 for some folders only; a sharded fp16 encoder; a sharded plain UNet
    "text_encoder/model.safetensors",
    "text_encoder_2/model.fp16-00001-of-00002.safetensors",
    "text_encoder_2/model.fp16-00002-of-00002.safetensors",
    "text_encoder_2/model.safetensors.index.fp16.json",
    "text_encoder_2/pytorch_model.bin",
    "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.safetensors.index.json",
    "unet/diffusion_pytorch_model.ckpt",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]


def weights(patterns: list[str]) -> set[str]:
    return {p for p in patterns if "safetensors" in p or p.endswith((".bin", ".ckpt", ".pt"))}


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        (SDXL_REPO, {f for f in SDXL_REPO if ".fp16.safetensors" in f and "/" in f}),
        (PLAIN_REPO, {f for f in PLAIN_REPO if f.endswith(".safetensors")}),
        (MIXED_REPO, {f for f in MIXED_REPO if "safetensors" in f}),
    ],
    ids=["fp16", "plain-only", "mixed"],
)
def test_download_patterns_take_fp16_where_a_folder_has_it_else_plain_and_never_pickles(repo, expected):
    patterns = hub_files_for("turbo", repo)
    assert weights(patterns) == expected
    assert {p for p in patterns if p.endswith("config.json")} >= {f"{c}/config.json" for c in ("unet", "vae")}
    refiner = hub_files_for("sdxl-refiner", repo)
    assert not any(p.startswith(("text_encoder/", "tokenizer/")) for p in refiner)
    assert weights(refiner) == {p for p in expected if not p.startswith("text_encoder/")}


def fake_repo(tiny_cache_dir: Path, where: Path) -> Path:
    """The tiny Turbo as a repository that mixes layouts: the UNet in fp16 beside float32, the second text
    encoder as fp16 shards only, the others plain, plus a pickle that must never be fetched."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    repo = where / "repo"
    shutil.copytree(tiny_root(tiny_cache_dir) / "turbo", repo)
    unet = UNet2DConditionModel.from_pretrained(repo / "unet")
    unet.half().save_pretrained(repo / "unet", variant="fp16")
    encoder = CLIPTextModelWithProjection.from_pretrained(repo / "text_encoder_2")
    (repo / "text_encoder_2" / "model.safetensors").unlink()
    encoder.half().save_pretrained(repo / "text_encoder_2", variant="fp16", max_shard_size="20KB")
    (repo / "text_encoder" / "pytorch_model.bin").write_bytes(b"not to be fetched")
    return repo


def fake_hub(monkeypatch, repo: Path, cache: Path) -> None:
    """``snapshot_download`` from a local folder: copies what the patterns allow into a snapshot folder."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **_):
        target = cache / repo_id.replace("/", "--")
        if local_files_only:
            if not target.exists():
                raise FileNotFoundError(repo_id)
            return str(target)
        files = [str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / name, target / name)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def test_a_mixed_repository_downloads_each_folders_weights_and_loads(tiny_cache_dir, tmp_path, monkeypatch):
    repo = fake_repo(tiny_cache_dir, tmp_path)
    fake_hub(monkeypatch, repo, tmp_path / "hub")
    settings = tiny_settings(tiny_cache_dir, turbo_model="someone/mixed", vae_model="", draft_vae_model="")
    assert missing_models(settings, ["turbo"]) == ["turbo"]

    listing = [str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()]
    folder = download(settings, ["turbo"], list_files=lambda repo_id: listing)["turbo"]
    got = {str(p.relative_to(folder)) for p in folder.rglob("*.safetensors")}
    assert got == {
        "text_encoder/model.safetensors",
        *(f"text_encoder_2/{p.name}" for p in (repo / "text_encoder_2").glob("model.fp16-*.safetensors")),
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert len(got) > 4 and not list(folder.rglob("*.bin"))
    assert missing_models(settings, ["turbo"]) == []

    registry = ModelRegistry(settings.replace(turbo_model=str(folder)), "cpu", torch.float32, "resident")
    pipe = registry.get("turbo").text2img
    from diffusers import UNet2DConditionModel

    fp16 = UNet2DConditionModel.from_pretrained(repo / "unet", variant="fp16").state_dict()
    loaded = pipe.unet.state_dict()
    assert all(torch.equal(loaded[k], v.float()) for k, v in fp16.items())  # the fp16 files, not the float32 ones


def test_a_snapshot_of_configs_alone_is_missing_and_so_is_one_lacking_a_shard(tiny_cache_dir, tmp_path, monkeypatch):
    repo = fake_repo(tiny_cache_dir, tmp_path)
    fake_hub(monkeypatch, repo, tmp_path / "hub")
    settings = tiny_settings(tiny_cache_dir, turbo_model="someone/plain", vae_model="", draft_vae_model="")
    snapshot = tmp_path / "hub" / "someone--plain"
    for config in repo.rglob("*.json"):  # what the fp16-only patterns fetched from a plain repository
        (snapshot / config.relative_to(repo)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, snapshot / config.relative_to(repo))
    assert missing_models(settings, ["turbo"]) == ["turbo"]
    registry = ModelRegistry(settings, "cpu", torch.float32, "resident")
    with pytest.raises(ModelMissing, match=r"someone/plain.*no safetensors weights on disk for text_encoder, "):
        registry.resolve("turbo")

    for f in repo.rglob("*.safetensors"):
        shutil.copy(f, snapshot / f.relative_to(repo))
    assert missing_models(settings, ["turbo"]) == []
    next((snapshot / "text_encoder_2").glob("model.fp16-00002-*.safetensors")).unlink()  # an interrupted download
    assert missing_models(settings, ["turbo"]) == ["turbo"]


def test_a_folder_whose_only_fp16_weights_are_shards_loads_them(tiny_cache_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    repo = fake_repo(tiny_cache_dir, tmp_path)
    for f in (repo / "unet").glob("*.safetensors"):  # fp16 only in text_encoder_2's shards; the UNet plain shards
        f.unlink()
    unet = UNet2DConditionModel.from_pretrained(tiny_root(tiny_cache_dir) / "turbo" / "unet")
    unet.save_pretrained(repo / "unet", max_shard_size="200KB")
    assert len(list((repo / "unet").glob("diffusion_pytorch_model-*-of-*.safetensors"))) > 1
    registry = ModelRegistry(tiny_settings(tiny_cache_dir, turbo_model=str(repo)), "cpu", torch.float32, "resident")
    assert registry._variant(repo) == "fp16"
    pipe = registry.get("turbo").text2img
    assert pipe.text_encoder_2.dtype == torch.float32
    loaded = pipe.unet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in unet.state_dict().items())


def test_a_repository_without_safetensors_for_a_folder_is_refused_at_download(tiny_cache_dir, tmp_path, monkeypatch):
    repo = fake_repo(tiny_cache_dir, tmp_path)
    for f in (repo / "unet").glob("*.safetensors"):
        f.unlink()
    (repo / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle")
    fake_hub(monkeypatch, repo, tmp_path / "hub")
    settings = EngineSettings.for_preset("sdxl", cache_dir=tmp_path, turbo_model="someone/pickles", vae_model="",
                                         draft_vae_model="")
    listing = [str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()]
    with pytest.raises(ModelMissing, match=r"no safetensors weights for unet"):
        download(settings, ["turbo"], list_files=lambda repo_id: listing)
    assert not list((tmp_path / "hub").rglob("*.bin"))
