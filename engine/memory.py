"""How much GPU memory each ``ENGINE_MEMORY`` mode needs: the arithmetic behind ``auto`` (docs/PERFORMANCE.md).

Weights are fp16 bytes of the published architectures (``engine/architectures.json``; parameter and
buffer counts recomputed on the meta device by ``tests/engine/test_memory_plan.py``). Activations are
the peak of live tensors of one forward in fp16, measured on the meta device with flash/memory-efficient
attention (no attention matrix): UNets at 77 tokens, finals at 1024 px with classifier-free guidance
(batch 2), drafts at 512 px. No torch here: ``auto`` is decided before anything is loaded.
"""

from __future__ import annotations

GB = 10**9

# Parameters (+ buffers) of each component, from engine/architectures.json.
PARAMS = {
    "sdxl_unet": 2_567_463_684,  # Turbo and SDXL base
    "ssd1b_unet": 1_331_334_404,
    "refiner_unet": 2_259_526_660,
    "text_encoder": 123_060_557,  # CLIP ViT-L
    "text_encoder_2": 694_659_917,  # OpenCLIP ViT-bigG
    "vae": 83_653_863,
    "taesd": 2_445_063,
}
# fuse_qkv_projections() adds to_qkv/to_kv and keeps the unfused projections too.
FUSED_EXTRA = {"sdxl_unet": 647_987_200, "ssd1b_unet": 294_912_000, "refiner_unet": 338_952_192}


def weights(name: str, fused: bool = False) -> int:
    """fp16 bytes of one component (with fused QKV duplicates when ``fused``)."""
    return 2 * (PARAMS[name] + (FUSED_EXTRA.get(name, 0) if fused else 0))


# Peak live activations of one call, fp16 bytes (meta-device measurement, see the module docstring).
ACTIVATIONS = {
    "final_unet_1024_cfg": 330_000_000,  # SSD-1B and SDXL base alike (same widths); refiner 396 MB
    "refiner_unet_1024_cfg": 396_000_000,
    "draft_unet_512_x16": 661_000_000,  # Turbo, batch 16 (a CUDA graph's pool keeps this much)
    "draft_unet_512_x4": 165_000_000,
    "taesd_512_x16": 1_611_000_000,  # TAESDXL decode of 16 drafts (its graph pool)
    "taesd_512_x4": 403_000_000,
    "vae_decode_1024": 1_611_000_000,  # the full VAE, one 1024 px image, untiled
    "vae_decode_1024_tiled": 408_000_000,  # in 512 px tiles (ENGINE_MEMORY=offload)
}
CUDA_CONTEXT = 500_000_000  # CUDA context + cuBLAS/cuDNN workspaces: outside torch's allocator
ALLOCATOR_SLACK = 0.10  # reserved beyond allocated for activations: block rounding and fragmentation


def _peak(resident_weights: int, persistent: int, transient: int) -> int:
    """Weights + context exactly; graph pools and the largest transient with the allocator's slack."""
    return resident_weights + CUDA_CONTEXT + round((persistent + transient) * (1 + ALLOCATOR_SLACK))


def resident_peak(final_model: str = "ssd-1b", fused: bool = False) -> int:
    """Every model on the GPU (shared text encoders and VAE, draft graphs for batches up to 16; with the fused
    QKV duplicates when ``fused``, ``ENGINE_FUSE_QKV``)."""
    encoders = weights("text_encoder") + weights("text_encoder_2")
    common = weights("sdxl_unet", fused=fused) + encoders + weights("vae") + weights("taesd")
    if final_model == "ssd-1b":
        finals = weights("ssd1b_unet", fused=fused)
        unet_act = ACTIVATIONS["final_unet_1024_cfg"]
    else:  # SDXL base + refiner (it shares text_encoder_2 and the VAE)
        finals = weights("sdxl_unet", fused=fused) + weights("refiner_unet", fused=fused)
        unet_act = ACTIVATIONS["refiner_unet_1024_cfg"]
    pools = ACTIVATIONS["draft_unet_512_x16"] + ACTIVATIONS["taesd_512_x16"]
    transient = max(unet_act, ACTIVATIONS["vae_decode_1024"])
    return _peak(common + finals, pools, transient)


def offload_final_peak(final_model: str = "ssd-1b") -> int:
    """A 1024 px final in ``offload`` mode: Turbo (and its graphs) off the GPU, one final component at a
    time on it (accelerate's model offload; no fused duplicates), the VAE decoding in 512 px tiles."""
    unet = "ssd1b_unet" if final_model == "ssd-1b" else "sdxl_unet"  # the base is the larger of base/refiner
    encoders = weights("text_encoder") + weights("text_encoder_2")
    stages = [
        (encoders, 0),
        (weights(unet), ACTIVATIONS["final_unet_1024_cfg"]),
        (weights("vae"), ACTIVATIONS["vae_decode_1024_tiled"]),
    ]
    # TAESDXL stays (live previews); the stage whose weights + activations are largest is the peak.
    return max(_peak(w + weights("taesd"), 0, act) for w, act in stages)


def offload_draft_peak(batch: int = 4) -> int:
    """Drafts in ``offload`` mode: Turbo resident without fused duplicates, graphs for batches up to ``batch``
    (activations grow with the batch: measured at 1, 4 and 16 images, linear within 1 %)."""
    resident = (
        weights("sdxl_unet") + weights("text_encoder") + weights("text_encoder_2") + weights("vae") + weights("taesd")
    )
    per_image = (ACTIVATIONS["draft_unet_512_x16"] + ACTIVATIONS["taesd_512_x16"]) / 16
    return _peak(resident, round(per_image * batch), 0)


def offload_max_batch(total_bytes: int, limit: int) -> int:
    """The largest draft batch bucket (up to ``limit``) whose offload-mode peak fits ``total_bytes``."""
    fitting = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= limit and offload_draft_peak(b) <= total_bytes]
    return max(fitting, default=1)


def memory_mode_for(total_bytes: int, final_model: str = "ssd-1b", fused: bool = False) -> str:
    """``auto``: ``resident`` when the card holds the resident peak, else ``offload``."""
    return "resident" if total_bytes >= resident_peak(final_model, fused) else "offload"
