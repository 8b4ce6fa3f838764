"""ENGINE_MEMORY=offload on an 8 GB card: the memory plan (engine.memory) checked against the published
architectures, the ``auto`` decision, and the placement policy on the tiny preset (Turbo off the device
while a final runs, the same drafts after it, the final's VAE decoding in tiles at 1024 px).

CUDA memory itself is measured only on a GPU (tests/engine/test_gpu.py)."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from engine import memory
from engine.device import resolve_memory
from engine.requests import DraftRequest, FinalRequest

from .conftest import tiny_settings

GiB = 2**30


# ---- the plan's figures, recomputed at full size on the meta device --------------------------------------


def _meta(build):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def test_weight_figures_are_the_published_architectures():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.tiny import full_architectures

    arch = full_architectures()
    for key, name in (("unet_sdxl", "sdxl_unet"), ("unet_ssd1b", "ssd1b_unet"), ("unet_refiner", "refiner_unet")):
        unet = _meta(lambda key=key: UNet2DConditionModel.from_config(arch[key]))
        plain = _count(unet)
        unet.fuse_qkv_projections()
        assert (plain, _count(unet) - plain) == (memory.PARAMS[name], memory.FUSED_EXTRA[name]), name
    assert _count(_meta(lambda: AutoencoderKL.from_config(arch["vae"]))) == memory.PARAMS["vae"]
    te1 = _meta(lambda: CLIPTextModel(CLIPTextConfig(**arch["text_encoder"])))
    te2 = _meta(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_encoder_2"])))
    assert (_count(te1), _count(te2)) == (memory.PARAMS["text_encoder"], memory.PARAMS["text_encoder_2"])
    assert memory.weights("sdxl_unet") == pytest.approx(5.13e9, rel=0.01)  # the "5.1 GB"
    assert memory.weights("ssd1b_unet") == pytest.approx(2.66e9, rel=0.01)


class _LiveBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of the tensors ops create, each storage counted until its last tensor is gone."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}

    def _drop(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            self.live -= self.sizes.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage()._cdata
                if key not in self.refs:
                    self.refs[key], self.sizes[key] = 0, t.untyped_storage().nbytes()
                    self.live += self.sizes[key]
                    self.peak = max(self.peak, self.live)
                self.refs[key] += 1
                weakref.finalize(t, self._drop, key)
        return out


def _peak_bytes(fn, monkeypatch) -> int:
    # Flash / memory-efficient attention never holds the attention matrix: an output-sized stand-in.
    def attention(q, k, v, *args, **kwargs):
        return torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", attention)
        with torch.inference_mode(), _LiveBytes() as tracker:
            fn()
    return tracker.peak


def test_activation_figures_of_a_1024px_final(monkeypatch):
    """The figures the offload plan rests on: SSD-1B's UNet at 1024 px with guidance, the VAE decode whole
    and in 512 px tiles (as offload mode decodes)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from engine.placement import tile_vae
    from engine.tiny import full_architectures

    arch, half, meta = full_architectures(), torch.float16, "meta"
    unet = _meta(lambda: UNet2DConditionModel.from_config(arch["unet_ssd1b"])).to(meta, half).eval()
    x, enc = torch.empty(2, 4, 128, 128, device=meta, dtype=half), torch.empty(2, 77, 2048, device=meta, dtype=half)
    added = {"text_embeds": torch.empty(2, 1280, device=meta, dtype=half), "time_ids": torch.empty(2, 6, device=meta)}
    step = torch.tensor(999, device=meta)
    unet_peak = _peak_bytes(lambda: unet(x, step, enc, added_cond_kwargs=added), monkeypatch)
    assert unet_peak == pytest.approx(memory.ACTIVATIONS["final_unet_1024_cfg"], rel=0.05)

    vae = _meta(lambda: AutoencoderKL.from_config(arch["vae"])).to(meta, half).eval()
    z = torch.empty(1, 4, 128, 128, device=meta, dtype=half)
    whole = _peak_bytes(lambda: vae.decode(z), monkeypatch)
    tile_vae(vae)
    tiled = _peak_bytes(lambda: vae.decode(z), monkeypatch)
    assert whole == pytest.approx(memory.ACTIVATIONS["vae_decode_1024"], rel=0.05)
    assert tiled == pytest.approx(memory.ACTIVATIONS["vae_decode_1024_tiled"], rel=0.05)


# ---- auto ------------------------------------------------------------------------------------------------


def test_offload_plan_fits_an_8gb_card_and_resident_needs_more_than_12_gib():
    assert memory.offload_final_peak("ssd-1b") <= 7.5e9 - 2e9  # 2 GB of margin under the target
    assert memory.offload_final_peak("sdxl") <= 7.5e9
    assert 12 * GiB < memory.resident_peak("ssd-1b") < 14 * GiB  # ENGINE_FUSE_QKV off (the default)
    assert 14 * GiB < memory.resident_peak("ssd-1b", fused=True) < 16 * GiB  # +1.9 GB of fused duplicates


@pytest.mark.parametrize(
    ("total", "final_model", "fused", "mode"),
    [
        (8 * GiB, "ssd-1b", False, "offload"),
        (12 * GiB, "ssd-1b", False, "offload"),
        (14 * GiB, "ssd-1b", False, "resident"),  # about 14.4 GB with SSD-1B finals
        (14 * GiB, "ssd-1b", True, "offload"),  # the fused duplicates: about 16.3 GB
        (16 * GiB, "ssd-1b", True, "resident"),
        (16 * GiB, "sdxl", False, "offload"),  # Turbo + SDXL base + refiner: about 21.4 GB
        (24 * GiB, "sdxl", False, "resident"),
    ],
)
def test_auto_picks_offload_below_the_resident_peak(monkeypatch, total, final_model, fused, mode):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (total // 2, total))
    assert resolve_memory("auto", "cuda", final_model, fused) == mode
    assert resolve_memory("resident", "cuda", final_model) == "resident"  # an explicit setting is kept
    assert resolve_memory("auto", "cpu", final_model) == "resident"


# ---- placement on the tiny preset ------------------------------------------------------------------------


def test_offload_final_runs_without_turbo_on_the_device_and_drafts_come_back_the_same(tiny_cache_dir):
    """(a) while the final's UNet runs, Turbo has been moved to the host and the draft graphs are gone;
    (b) drafts after the final are pixel-identical to drafts before it; (c) the 1024 px final decodes
    in tiles. On a CPU the device and the host are one: the registry's record of moves is what is read."""
    from engine.models import ModelRegistry
    from engine.recipes import Recipes

    settings = tiny_settings(tiny_cache_dir, memory="offload")
    registry = ModelRegistry(settings, "cpu", torch.float32, "offload")
    recipes = Recipes(registry, settings)
    draft = DraftRequest("a lighthouse at dusk", seed=5, count=2)
    before = recipes.drafts([draft])[0]
    assert not registry.placement.moves and not registry.placement.drafts_away

    class CapturedGraphs:  # stands for the draft path's CUDA graphs (made on CUDA only)
        dropped = False

        def drop(self) -> None:  # frees the graphs' memory pool
            self.dropped = True

    captured = recipes._graphs[0] = CapturedGraphs()  # type: ignore[assignment]
    ssd = registry.get("ssd-1b").text2img
    seen: dict[str, object] = {}

    def during_unet(module, args):
        seen.setdefault("away", registry.placement.drafts_away)
        seen.setdefault("moves", list(registry.placement.moves))
        seen.setdefault("graphs", dict(recipes._graphs))

    hook = ssd.unet.register_forward_pre_hook(during_unet)
    tiles: list[tuple[int, ...]] = []
    tiled_decode = ssd.vae.tiled_decode

    def spy(z, *args, **kwargs):
        tiles.append(tuple(z.shape))
        return tiled_decode(z, *args, **kwargs)

    ssd.vae.tiled_decode = spy
    try:
        final = recipes.final(FinalRequest("a lighthouse at dusk", seed=6, model="ssd-1b", steps=1))
    finally:
        hook.remove()
        del ssd.vae.tiled_decode
    assert final.images[0].size == (1024, 1024)
    assert seen == {"away": True, "moves": [("turbo", "host")], "graphs": {}}
    assert captured.dropped  # its memory pool freed, not only forgotten
    assert tiles == [(1, 4, 128, 128)]  # one 1024 px latent, decoded through the tiles
    assert ssd.vae.tile_sample_min_size == 512

    after = recipes.drafts([draft])[0]
    assert list(registry.placement.moves)[-2:] == [("finals", "host"), ("turbo", "device")]
    assert not registry.placement.drafts_away
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_resident_mode_moves_nothing_and_decodes_whole(tiny_cache_dir):
    from engine.models import ModelRegistry

    settings = tiny_settings(tiny_cache_dir)
    registry = ModelRegistry(settings, "cpu", torch.float32, "resident")
    registry.get("turbo")
    assert not registry.get("ssd-1b").text2img.vae.use_tiling
    registry.make_room()
    registry.get("turbo")
    assert not registry.placement.moves and not registry.placement.drafts_away


def test_turbo_keeps_its_cuda_graphs_in_offload_mode(tiny_cache_dir):
    """Turbo is resident between finals: graphs stay on (dropped and captured again around a final);
    compile stays off (its graphs would hold the moved weights)."""
    from engine.models import ModelRegistry

    settings = tiny_settings(tiny_cache_dir, compile=False)
    registry = ModelRegistry(settings, "cuda", torch.float16, "offload")  # built only: nothing touches CUDA
    assert registry.graphs and not registry.compiled
    assert not ModelRegistry(settings.replace(compile=True), "cuda", torch.float16, "offload").compiled


@pytest.mark.parametrize(
    ("total", "limit", "batch"), [(8 * GiB, 16, 4), (8 * GiB, 2, 2), (12 * GiB, 16, 16), (7 * GiB, 16, 1)]
)
def test_offload_mode_lowers_draft_batches_to_what_the_card_holds(monkeypatch, total, limit, batch):
    """Turbo resident (6.94 GB) + context + graph pools: an 8 GB card holds bursts of 4, not 16."""
    from engine.device import offload_batch_limit

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (total // 2, total))
    assert offload_batch_limit("cuda", limit) == batch
    assert offload_batch_limit("cpu", limit) == limit


def test_out_of_memory_and_the_idle_worker_leave_turbo_where_a_final_put_it(make_engine):
    """After a final in offload mode Turbo is on the host. Freeing memory on an out-of-memory error walked the
    models with ``registry.get``, which brought Turbo's 6.9 GB back onto the GPU right then; the idle worker's
    graph captures did the same after every final. Both wait for the next draft now."""
    engine = make_engine(memory="offload")
    engine.registry.graphs = True  # as on CUDA: the idle worker would capture draft shapes
    engine.submit(DraftRequest("a pier", seed=1, count=1), user="u").future.result(timeout=120)
    engine.recipes.lora_library()  # free_memory walks the models to unload LoRAs
    final = FinalRequest("a pier at night", seed=2, model="ssd-1b", steps=1, width=256, height=256)
    engine.submit(final, user="u").future.result(timeout=300)
    placement = engine.registry.placement
    assert placement.drafts_away
    engine.recipes.free_memory()
    assert placement.drafts_away, "freeing memory brought Turbo back onto the GPU"
    assert not engine._idle_step() or placement.drafts_away  # idle work must not bring Turbo back
    assert placement.drafts_away
    after = engine.submit(DraftRequest("a pier", seed=1, count=1), user="u").future.result(timeout=120)
    assert len(after.images) == 1 and not placement.drafts_away  # the next draft brings it back
