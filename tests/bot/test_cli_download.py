"""`tiktok-bot download` against the emulators, in-process and as the README tells a person to run it."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.cli.download import ProgressBar, human_size, post_link
from sandbox.blobs import media_file
from sandbox.catalogue import T0, post_id_at
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from services.links import LinkKind

CLIP = post_id_at(T0, 1)
SLIDES = post_id_at(T0 + 2 * 86_400, 3)
PRIVATE = post_id_at(T0 + 4 * 86_400, 5)
CLIP_URL = f"https://www.tiktok.com/@sandbox.cook/video/{CLIP}"
TIKTOK_BOT = Path(sys.executable).with_name("tiktok-bot")


@pytest.fixture
def sandbox_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The emulators on a loop of their own thread (the CLI runs its own loop), and their env applied."""
    loop = asyncio.new_event_loop()
    sandbox = Sandbox([TikTokEmulator(), TTSaveEmulator()])
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(sandbox.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    env = sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    try:
        yield env
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_video(sandbox_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", CLIP_URL, "-o", str(tmp_path / "out")]) == 0
    saved = tmp_path / "out" / f"{CLIP}.mp4"
    assert saved.read_bytes() == media_file("clip.mp4")
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"{saved}  video/mp4  45.8 KB", out.out.splitlines()[1]]
    assert out.out.splitlines()[1].startswith("served by ttsave (ttsave ")
    assert out.err == ""  # no progress bar when stderr is not a terminal


def test_audio(sandbox_env: dict[str, str], tmp_path: Path) -> None:
    assert main(["download", CLIP_URL, "-o", str(tmp_path), "--audio"]) == 0
    assert sorted(p.name for p in tmp_path.glob(f"{CLIP}*")) == [f"{CLIP}.mp3"]


def test_original_from_the_web(
    sandbox_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", CLIP_URL, "-o", str(tmp_path), "--original", "--backend", "web"]) == 0
    assert sorted(p.name for p in tmp_path.glob(f"{CLIP}*")) == [f"{CLIP}.mp3", f"{CLIP}.mp4"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("served by web (web ")


def test_ytdlp_backend(
    sandbox_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", CLIP_URL, "-o", str(tmp_path), "--backend", "ytdlp"]) == 0
    assert (tmp_path / f"{CLIP}.mp4").read_bytes() == media_file("clip.mp4")
    assert capsys.readouterr().out.splitlines()[-1].startswith("served by ytdlp (ytdlp ")


def test_ytdlp_says_a_photo_post_is_sound_only(
    sandbox_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://www.tiktok.com/@travel_bug-1/photo/{SLIDES}"
    assert main(["download", url, "-o", str(tmp_path), "--backend", "ytdlp"]) == 1
    assert "yt-dlp gives only the sound of a photo post" in capsys.readouterr().err
    assert main(["download", url, "-o", str(tmp_path), "--backend", "ytdlp", "--audio"]) == 0
    assert sorted(p.name for p in tmp_path.glob(f"{SLIDES}*")) == [f"{SLIDES}.mp3"]


def test_slideshow(sandbox_env: dict[str, str], tmp_path: Path) -> None:
    url = f"https://www.tiktok.com/@travel_bug-1/photo/{SLIDES}"
    assert main(["download", url, "-o", str(tmp_path), "--backend", "web"]) == 0
    names = sorted(p.name for p in tmp_path.glob(f"{SLIDES}*"))
    assert names == [f"{SLIDES}-01.jpg", f"{SLIDES}-02.jpg", f"{SLIDES}-03.jpg", f"{SLIDES}.mp3"]
    assert (tmp_path / f"{SLIDES}-02.jpg").read_bytes() == media_file("photo2.jpg")


def test_short_link(sandbox_env: dict[str, str], tmp_path: Path) -> None:
    assert (
        main(["download", "look: https://vm.tiktok.com/ZMclip01/ !", "-o", str(tmp_path), "--backend", "web"])
        == 0
    )
    assert (tmp_path / f"{CLIP}.mp4").read_bytes() == media_file("clip.mp4")


def test_failure_is_one_line(
    sandbox_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://www.tiktok.com/@sandbox.cook/video/{PRIVATE}"
    assert main(["download", url, "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unavailable:private" in err and "Traceback" not in err
    assert list(tmp_path.glob(f"{PRIVATE}*")) == []


def test_not_a_link(sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", "no link here"]) == 2
    assert "not a TikTok post link" in capsys.readouterr().err


def test_audio_and_original_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["download", CLIP_URL, "--audio", "--original"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("text", "kind", "post_id", "code"),
    [
        (CLIP_URL, LinkKind.POST, CLIP, None),
        (f"see https://www.tiktok.com/@x/photo/{SLIDES}?lang=en", LinkKind.POST, SLIDES, None),
        ("https://vm.tiktok.com/ZMclip01/", LinkKind.SHORT, None, "ZMclip01"),
        ("https://www.tiktok.com/t/ZSbig0001/", LinkKind.SHORT, None, "ZSbig0001"),
    ],
)
def test_post_link(text: str, kind: LinkKind, post_id: str | None, code: str | None) -> None:
    found = post_link(text)
    assert found is not None
    assert (found.kind, found.post_id, found.code) == (kind, post_id, code)
    assert post_link("https://www.tiktok.com/about") is None


def test_progress_bar() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.update(500_000, 1_000_000)
    bar.update(600_000, 1_000_000)  # within 0.1 s: not redrawn
    assert out.getvalue().count("\r") == 1 and "500.0 KB / 1.0 MB" in out.getvalue()
    bar.finish()
    assert out.getvalue().endswith("\r")
    assert [human_size(n) for n in (999, 45_825, 64_000_000)] == ["999 B", "45.8 KB", "64.0 MB"]


def test_the_readme_recipe(tmp_path: Path) -> None:
    """The README recipe: `tiktok-bot sandbox --env-file F`, then `env $(cat F) tiktok-bot download URL`."""
    env = {k: v for k, v in os.environ.items() if "__" not in k and k != "UPSTREAM_ROUTES"}
    env_file = tmp_path / "sandbox.env"
    server = subprocess.Popen(
        [str(TIKTOK_BOT), "sandbox", "--env-file", str(env_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.strip() == "sandbox ready" or not line:
                break
        assert lines[-1].strip() == "sandbox ready", lines
        printed = dict(line.strip().split("=", 1) for line in lines[:-1])
        from_file = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert printed == from_file and {"TTSAVE__URL", "UPSTREAM_ROUTES"} <= set(from_file)
        # `env $(cat sandbox.env)`: the values are single words, so the shell passes them through intact.
        assert all(" " not in value for value in from_file.values())
        done = subprocess.run(
            [str(TIKTOK_BOT), "download", CLIP_URL, "-o", "out"],
            cwd=tmp_path,
            env={**env, **from_file},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / f"{CLIP}.mp4").read_bytes() == media_file("clip.mp4")
        # The other way the README offers: the same file as the settings file.
        done = subprocess.run(
            [
                str(TIKTOK_BOT),
                "--env-file",
                str(env_file),
                "download",
                CLIP_URL,
                "-o",
                "out2",
                "--backend",
                "web",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "served by web" in done.stdout
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert server.returncode == 0


def test_the_sandbox_over_https_through_a_proxy(tmp_path: Path) -> None:
    """`tiktok-bot sandbox --https CA --proxy`: the CLI downloads over impersonated TLS through the proxy."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "__" not in k and k not in ("UPSTREAM_ROUTES", "UPSTREAM_CA_FILE")
    }
    env_file = tmp_path / "sandbox.env"
    server = subprocess.Popen(
        [str(TIKTOK_BOT), "sandbox", "--env-file", str(env_file), "--https", "ca.pem", "--proxy"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.strip() == "sandbox ready" or not line:
                break
        assert lines[-1].strip() == "sandbox ready", lines
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert (
            settings["UPSTREAM_CA_FILE"] == str(tmp_path / "ca.pem")
            and "https://" in settings["UPSTREAM_ROUTES"]
        )
        assert settings["DOWNLOAD__PROXIES"].startswith("http://127.0.0.1:")
        done = subprocess.run(
            [
                str(TIKTOK_BOT),
                "--env-file",
                str(env_file),
                "download",
                CLIP_URL,
                "-o",
                "out",
                "--backend",
                "web",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / f"{CLIP}.mp4").read_bytes() == media_file("clip.mp4")
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=10)
    assert server.returncode == 0
    forwarded = [line for line in out.splitlines() if line.startswith("proxy: ")]
    # Page and CDN share one CONNECT tunnel here (both routed to the same https listener): curl reuses it.
    assert forwarded and int(forwarded[0].split()[1]) >= 1
