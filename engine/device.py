"""Where the engine runs: device and memory mode from settings, OOM detection, quiet libraries.

Shared by the in-process worker (``engine.worker``) and the cluster's replicas
(``engine.cluster.workers``), so both pick devices and read failures the same way.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> str:
    """``ENGINE_DEVICE`` as a torch device name: ``auto`` picks CUDA, then MPS, then the CPU."""
    import torch

    if setting != "auto":
        if setting.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"ENGINE_DEVICE={setting} but PyTorch sees no CUDA GPU (is the CUDA build installed?).")
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(setting: str, device: str):
    """``ENGINE_DTYPE`` as a torch dtype: ``auto`` is float16 on a GPU (CUDA, MPS) and float32 on the CPU."""
    import torch

    if setting == "auto":
        return torch.float16 if device.startswith(("cuda", "mps")) else torch.float32
    return getattr(torch, setting)


def resolve_memory(setting: str, device: str, final_model: str = "ssd-1b", fused: bool = False) -> str:
    """``ENGINE_MEMORY`` for ``device``: ``auto`` keeps models resident on a GPU that holds their peak
    (``engine.memory.resident_peak``: about 14.4 GB with SSD-1B finals, 16.3 GB with ENGINE_FUSE_QKV), else
    offloads."""
    if setting != "auto":
        return setting
    if not device.startswith("cuda"):
        return "resident"
    import torch

    from .memory import memory_mode_for

    _, total = torch.cuda.mem_get_info(torch.device(device))
    return memory_mode_for(total, final_model, fused)


def offload_batch_limit(device: str, max_batch: int) -> int:
    """In ``offload`` mode on CUDA: ``max_batch`` lowered to the draft batch the card holds with Turbo
    resident and its CUDA graphs (``engine.memory.offload_max_batch``: 4 on an 8 GB card, 16 from 10 GiB)."""
    if not device.startswith("cuda"):
        return max_batch
    import torch

    from .memory import offload_max_batch

    _, total = torch.cuda.mem_get_info(torch.device(device))
    return offload_max_batch(total, max_batch)


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def quiet_libraries() -> None:
    """Progress bars and deprecation chatter of diffusers/transformers belong in no bot log."""
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # cosmetic only
        log.debug("could not quiet libraries", exc_info=True)
