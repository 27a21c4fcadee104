"""`tiktok-bot demo` end to end: the scripted conversation passes, and its transcript and files are right."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from bot.cli.demo import run_demo
from sandbox.catalogue import CATALOGUE, MEDIA_DIR, Status
from sandbox.demo import script


def media(name: str) -> bytes:
    return (MEDIA_DIR / name).read_bytes()


async def test_the_demo_passes_and_saves_what_the_chats_received(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(tmp_path / "demo-out", out)
    text = out.getvalue()
    assert code == 0, text
    assert "0 failed" in text
    assert "via ttsave · downloaded" in text
    assert "via web · downloaded" in text  # the 4K post: TTSave's file is too big, the web backend's fits
    assert "by file_id, nothing uploaded" in text
    assert "link ok · via cache · cache hit" in text
    assert "This post is private" in text
    assert "edits its message with a button [More ▶]:" in text  # the More button paged the hashtag
    assert "by action" in text  # the operator stats at the end
    # Discord: a link uploaded, the same link again by the attachment's URL, a slash command paged.
    assert "replies with 7301444403200000001_video.mp4 45.8 kB" in text
    assert "/attachments/" in text
    assert "defers (“thinking…”), then fills in its answer with a button [More ▶]" in text
    assert "edits its answer with a button" in text
    assert "discord          4" in text
    saved = tmp_path / "demo-out" / "telegram" / "01-video-1.mp4"
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(media("clip.mp4")).digest()
    assert (tmp_path / "demo-out" / "demo.sqlite3").exists()


async def test_a_step_without_its_reply_fails_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "video" of the script is now a deleted post: its steps get an apology instead of a video.
    deleted = next(p for p in CATALOGUE.posts.values() if p.status is Status.DELETED)
    monkeypatch.setattr(script, "CLIP", deleted)
    monkeypatch.setattr(script, "STEP_TIMEOUT", 0.5)
    out = io.StringIO()
    code = await run_demo(tmp_path / "demo-out", out)
    text = out.getvalue()
    assert code == 1
    assert "telegram step 1 (a video link): no sendVideo within 0.5 s" in text
    # The first video, /post of it and its repeat fail (a slow machine may fail more within 0.5 s).
    assert "telegram step 5 (/post: a post's stats): sendMessage: expected '@sandbox.cook'" in text
    assert "telegram step 10 (the same video again, in the group: a cache hit)" in text
    assert "telegram step 3 " not in text
    assert "discord step 11 (a link in a server channel): expected 1 attachment(s), got 0" in text
