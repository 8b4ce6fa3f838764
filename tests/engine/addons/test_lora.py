"""LoRA add-on on the tiny preset: tiny peft LoRAs saved with save_lora_weights, loaded through LoraLibrary."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from safetensors.torch import save_file

from engine.addons import lora as lora_mod
from engine.addons.lora import LoraChoice, LoraError, LoraLibrary, adapter_name, lora_batch_key

from .conftest import draft


@pytest.fixture(scope="module")
def library(addon_settings) -> LoraLibrary:
    return LoraLibrary(addon_settings)


@pytest.fixture(scope="module")
def plain(turbo_pipe) -> np.ndarray:
    return draft(turbo_pipe)


def test_names_for_autocomplete(library):
    assert library.names() == ["tiny-glow", "tiny-ink"]
    assert library.complete("ink") == ["tiny-ink"]
    assert library.complete("TINY") == ["tiny-glow", "tiny-ink"]
    assert library.complete("", limit=1) == ["tiny-glow"]


def test_validate_names_the_problem(library):
    assert library.validate([LoraChoice("tiny-ink", 0.7)]) == (LoraChoice("tiny-ink", 0.7),)
    with pytest.raises(LoraError, match="At most 2"):
        library.validate([LoraChoice("tiny-ink"), LoraChoice("tiny-glow"), LoraChoice("tiny-ink")])
    with pytest.raises(LoraError, match="Unknown LoRA 'nope'"):
        library.validate([LoraChoice("nope")])
    with pytest.raises(LoraError, match="out of range"):
        library.validate([LoraChoice("tiny-ink", 3.0)])
    with pytest.raises(LoraError, match="twice"):
        library.validate([LoraChoice("tiny-ink"), LoraChoice("tiny-ink", 0.5)])


def test_lora_changes_the_image_and_switching_off_restores_it_exactly(library, turbo_pipe, plain):
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0)], model="turbo"):
        with_lora = draft(turbo_pipe)
    assert np.abs(with_lora - plain).mean() > 0.005
    assert library.loaded(turbo_pipe) == [adapter_name("tiny-ink", "turbo")]
    assert np.array_equal(draft(turbo_pipe), plain)  # next job without LoRA: the image it gave before
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 0.0)], model="turbo"):
        assert np.array_equal(draft(turbo_pipe), plain)
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0)], model="turbo"):
        again = draft(turbo_pipe)
    assert np.array_equal(again, with_lora)  # loaded once, same result when asked again
    library.unload(turbo_pipe)
    assert library.loaded(turbo_pipe) == []
    assert np.array_equal(draft(turbo_pipe), plain)


def test_two_loras_stack_with_their_weights(library, turbo_pipe, plain):
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0)], model="turbo"):
        ink = draft(turbo_pipe)
    with library.applied(turbo_pipe, [LoraChoice("tiny-glow", 1.0)], model="turbo"):
        glow = draft(turbo_pipe)
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0), LoraChoice("tiny-glow", 1.0)], model="turbo"):
        both = draft(turbo_pipe)
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0), LoraChoice("tiny-glow", 0.0)], model="turbo"):
        ink_only = draft(turbo_pipe)
    assert np.abs(both - ink).mean() > 0.002 and np.abs(both - glow).mean() > 0.002
    assert np.allclose(ink_only, ink, atol=1e-6)
    expected = {adapter_name("tiny-glow", "turbo"), adapter_name("tiny-ink", "turbo")}
    assert set(library.loaded(turbo_pipe)) == expected
    assert np.array_equal(draft(turbo_pipe), plain)
    library.unload(turbo_pipe)


def test_adapter_names_are_safe_and_distinct():
    assert adapter_name("my-lora", "turbo") != adapter_name("my_lora", "turbo")
    assert adapter_name("my-lora", "turbo") != adapter_name("my-lora", "ssd-1b")
    assert re.fullmatch(r"[A-Za-z0-9_]+", adapter_name("a.b c/ü", "sdxl-base"))


def test_batch_key_groups_same_loras_and_weights():
    a = lora_batch_key([LoraChoice("x", 0.5), LoraChoice("y", 1.0)])
    assert a == lora_batch_key([LoraChoice("y", 1.0), LoraChoice("x", 0.5)])
    assert a != lora_batch_key([LoraChoice("x", 0.6), LoraChoice("y", 1.0)])
    assert a != lora_batch_key([LoraChoice("x", 0.5)])
    assert lora_batch_key([]) == ()


def test_a_file_that_is_no_sdxl_lora_is_refused_and_leaves_the_pipeline_clean(
    addon_settings, tmp_path, turbo_pipe, plain
):
    import torch

    shutil.copy(addon_settings.resolve_tiny("tiny:loras") / "tiny-glow.safetensors", tmp_path)
    save_file({"model.0.weight": torch.zeros(3, 3)}, str(tmp_path / "not-a-lora.safetensors"))
    (tmp_path / "old.ckpt").write_bytes(b"pickles are not loaded")
    library = LoraLibrary(addon_settings.replace(lora_dir=str(tmp_path)))
    assert library.names() == ["not-a-lora", "tiny-glow"]
    with pytest.raises(LoraError, match="not-a-lora"):
        library.activate(turbo_pipe, [LoraChoice("not-a-lora")], model="turbo")
    library.deactivate(turbo_pipe)
    assert library.loaded(turbo_pipe) == []
    assert np.array_equal(draft(turbo_pipe), plain)


def test_missing_gives_one_line(addon_settings, tmp_path):
    assert lora_mod.missing(addon_settings) is None
    assert lora_mod.missing(addon_settings.replace(lora_dir="")) is None  # off: nothing to say
    line = lora_mod.missing(addon_settings.replace(lora_dir=str(tmp_path / "nowhere")))
    assert "is not a folder" in line and "\n" not in line
    assert "no .safetensors" in lora_mod.missing(addon_settings.replace(lora_dir=str(tmp_path)))


def test_each_lora_is_loaded_once_per_pipeline(library, turbo_pipe, monkeypatch):
    calls: list[str] = []
    real = turbo_pipe.load_lora_weights

    def counting(state, adapter_name=None, **kwargs):
        calls.append(adapter_name)
        return real(state, adapter_name=adapter_name, **kwargs)

    monkeypatch.setattr(turbo_pipe, "load_lora_weights", counting)
    for weight in (1.0, 0.5, 1.0):
        with library.applied(turbo_pipe, [LoraChoice("tiny-glow", weight)], model="turbo"):
            pass
    with library.applied(turbo_pipe, [LoraChoice("tiny-glow", 1.0)], model="ssd-1b"):
        pass  # another model's adapter: its own load (the text encoders are shared between models)
    assert calls == [adapter_name("tiny-glow", "turbo"), adapter_name("tiny-glow", "ssd-1b")]
    library.unload(turbo_pipe)


def test_text_encoder_layers_are_skipped_with_a_warning_where_peft_is_too_old(
    addon_settings, turbo_pipe, plain, monkeypatch, caplog
):
    monkeypatch.setattr(lora_mod, "text_encoder_lora_supported", lambda: False)
    library = LoraLibrary(addon_settings)
    with caplog.at_level("WARNING", logger="engine.addons.lora"):
        with library.applied(turbo_pipe, [LoraChoice("tiny-ink", 1.0)], model="turbo"):
            changed = draft(turbo_pipe)
    assert [r.getMessage() for r in caplog.records if "text-encoder layers" in r.getMessage()]
    adapters = turbo_pipe.get_list_adapters()
    assert adapters.get("unet") == [adapter_name("tiny-ink", "turbo")] and not adapters.get("text_encoder")
    assert np.abs(changed - plain).mean() > 0.005  # the UNet part still acts
    library.unload(turbo_pipe)
    assert np.array_equal(draft(turbo_pipe), plain)


def lora_footprint(pipe) -> tuple[dict[str, int], int, dict[str, tuple[int, ...]]]:
    """(parameters per LoRA-able component, peft wrapper layers, weight storage of each component)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from engine.graphs import weights_fingerprint

    parts = {name: getattr(pipe, name) for name in lora_mod.LORA_COMPONENTS}
    params = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
    wrappers = sum(isinstance(m, BaseTunerLayer) for module in parts.values() for m in module.modules())
    return params, wrappers, {name: weights_fingerprint(module) for name, module in parts.items()}


def test_loaded_loras_stay_within_the_lru_and_none_loaded_is_the_plain_pipeline(addon_settings, turbo_pipe, plain):
    library = LoraLibrary(addon_settings.replace(lora_loaded_max=1))
    library.unload(turbo_pipe)
    params, wrappers, storage = lora_footprint(turbo_pipe)
    assert wrappers == 0
    ink, glow = adapter_name("tiny-ink", "turbo"), adapter_name("tiny-glow", "turbo")
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink")], model="turbo"):
        pass
    assert library.loaded(turbo_pipe) == [ink]
    with library.applied(turbo_pipe, [LoraChoice("tiny-glow")], model="turbo"):
        assert library.loaded(turbo_pipe) == [glow]  # the least recently used made room
        with_glow = draft(turbo_pipe)
    assert library.loaded(turbo_pipe) == [glow]
    with library.applied(turbo_pipe, [LoraChoice("tiny-ink"), LoraChoice("tiny-glow")], model="turbo"):
        assert sorted(library.loaded(turbo_pipe)) == sorted([ink, glow])  # a job's own LoRAs all load
    assert len(library.loaded(turbo_pipe)) == 1
    assert not np.array_equal(with_glow, plain)
    library.unload(turbo_pipe)  # out of memory: none loaded
    assert library.loaded(turbo_pipe) == []
    assert lora_footprint(turbo_pipe) == (params, 0, storage)  # the plain modules, weights where they were
    assert np.array_equal(draft(turbo_pipe), plain)


def test_with_no_room_every_lora_leaves_after_its_job(addon_settings, turbo_pipe, plain):
    library = LoraLibrary(addon_settings.replace(lora_loaded_max=0))
    library.unload(turbo_pipe)
    before = lora_footprint(turbo_pipe)
    for name in ("tiny-ink", "tiny-glow", "tiny-ink"):
        with library.applied(turbo_pipe, [LoraChoice(name, 0.9)], model="turbo"):
            assert library.loaded(turbo_pipe) == [adapter_name(name, "turbo")]
            assert lora_footprint(turbo_pipe)[0] != before[0]
        assert library.loaded(turbo_pipe) == [] and lora_footprint(turbo_pipe) == before
    assert np.array_equal(draft(turbo_pipe), plain)
