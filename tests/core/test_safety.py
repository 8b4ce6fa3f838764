"""The image safety check with the real NudeNet detector (the optional extra), on images the tests make."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

from core.safety import ImageSafety, apply_policy
from engine.api import Progress
from tests.core import doubles
from tests.core.doubles import RecordingOrigin
from tests.core.jobs.support import make_service, wait_status
from tests.core.safety_images import landscape, nude_figure

pytest.importorskip("nudenet", reason="the [safety] extra is not installed")


@pytest.fixture(scope="module")
def safety() -> ImageSafety:
    return ImageSafety()


async def test_the_detector_flags_a_nude_figure_and_passes_a_landscape(safety):
    flagged = await safety.check(nude_figure())
    assert flagged.flagged and any(name == "FEMALE_BREAST_EXPOSED" for name, _ in flagged.findings)
    assert not (await safety.check(landscape())).flagged


async def test_the_detector_runs_off_the_event_loop(safety, monkeypatch):
    threads = []
    real = safety.verdict

    def recording(png):
        threads.append(threading.current_thread())
        return real(png)

    monkeypatch.setattr(safety, "verdict", recording)
    await safety.check(landscape())
    assert threads and threads[0] is not threading.main_thread()


async def test_spoiler_marks_and_block_drops_only_flagged_images(safety):
    files = [("draft_1.png", nude_figure()), ("draft_2.png", landscape())]
    spoilered, flagged = await apply_policy(safety, "spoiler", files, job_id=1)
    assert flagged == 1 and [name for name, _ in spoilered] == ["SPOILER_draft_1.png", "draft_2.png"]
    blocked, flagged = await apply_policy(safety, "block", files, job_id=1)
    assert flagged == 1 and [name for name, _ in blocked] == ["draft_2.png"]


@pytest.fixture
def nude_results(monkeypatch):
    """The fake engine's images are the nude figure (its own are flat colour squares)."""
    figure = nude_figure(256)
    monkeypatch.setattr(doubles, "png", lambda width, height, color=None: figure)


@pytest.mark.parametrize(
    ("mode", "names", "note"),
    [
        ("off", [f"draft_{i}.png" for i in range(1, 5)], None),
        ("spoiler", [f"SPOILER_draft_{i}.png" for i in range(1, 5)], "4 of 4 images posted as spoilers"),
        ("block", [], "4 of 4 images held back"),
    ],
)
async def test_drafts_are_checked_before_they_are_posted(store, tmp_path, nude_results, caplog, mode, names, note):
    caplog.set_level(logging.INFO, logger="core.safety")
    engine = doubles.FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    try:
        await service.guilds.update(10, image_safety=mode)
        origin = RecordingOrigin()
        job = await service.imagine(origin, prompt="a statue")
        engine.finish(job.id)
        await wait_status(store, job.id, "done")
        [(content, files, _)] = origin.deliveries[0].posts
        assert [name for name, _ in files] == names
        if note is None:
            assert "🛡️" not in content
        else:
            assert note in content
            assert any("flagged by the image safety check" in r.getMessage() for r in caplog.records)
    finally:
        await service.shutdown(0.0)


async def test_age_restricted_channels_are_not_checked(store, tmp_path, nude_results):
    engine = doubles.FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    service.client = SimpleNamespace(get_channel=lambda channel_id: SimpleNamespace(is_nsfw=lambda: True))
    try:
        await service.guilds.update(10, image_safety="block")
        origin = RecordingOrigin(age_restricted=True)
        job = await service.imagine(origin, prompt="a statue")
        engine.finish(job.id)
        await wait_status(store, job.id, "done")
        [(content, files, _)] = origin.deliveries[0].posts
        assert len(files) == 4 and "🛡️" not in content
    finally:
        await service.shutdown(0.0)


async def test_when_the_detector_cannot_run_nothing_unchecked_is_posted(store, tmp_path, monkeypatch):
    engine = doubles.FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    broken = ImageSafety()

    def missing(png):
        raise RuntimeError("onnxruntime could not load the model")

    monkeypatch.setattr(broken, "verdict", missing)
    service.safety = broken
    try:
        await service.guilds.update(10, image_safety="block")
        origin = RecordingOrigin()
        job = await service.imagine(origin, prompt="a vase")
        engine.finish(job.id)
        await wait_status(store, job.id, "done")
        [(content, files, _)] = origin.deliveries[0].posts
        assert files == [] and "4 of 4 images held back" in content
    finally:
        await service.shutdown(0.0)


class PreviewOrigin(RecordingOrigin):
    """Its delivery records the previews that ride along with status edits."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.previews: list[bytes] = []
        self.edits = 0

    async def acknowledge(self, content):
        delivery = await super().acknowledge(content)

        async def show(text, preview=None):
            self.edits += 1
            delivery.shown.append(text)
            if preview is not None:
                self.previews.append(preview)
            return True

        delivery.show = show
        return delivery


@pytest.mark.parametrize(
    ("mode", "age_restricted", "shown"),
    [
        ("block", False, ["landscape"]),
        ("spoiler", False, ["landscape"]),  # an edit cannot spoiler: a flagged preview is left out too
        ("off", False, ["figure", "landscape"]),
        ("block", True, ["figure", "landscape"]),
    ],
)
async def test_live_previews_of_finals_pass_the_same_check(store, tmp_path, mode, age_restricted, shown):
    engine = doubles.FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    if age_restricted:
        service.client = SimpleNamespace(get_channel=lambda channel_id: SimpleNamespace(is_nsfw=lambda: True))
    images = {"figure": nude_figure(256), "landscape": landscape(256)}
    try:
        await service.guilds.update(10, image_safety=mode, finals_outside_nsfw=True)
        origin = PreviewOrigin(age_restricted=age_restricted)
        job = await service.final(origin, prompt="a statue in a park")
        engine.run(job.id)
        on_progress = engine.item(job.id).on_progress
        for step, name in enumerate(["figure", "landscape"], start=1):
            edits = origin.edits
            on_progress(Progress(str(job.id), step, 4, preview=images[name]))

            def edited(before=edits, step=step):
                return origin.edits > before and f"step {step}/4" in origin.deliveries[0].shown[-1]

            await doubles.eventually(edited, timeout=20.0)  # the detector on a loaded machine
        assert origin.previews == [images[name] for name in shown]
    finally:
        await service.shutdown(0.0)
