"""`tiktok-bot download URL`: save a post's media through the download backends."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from bot.config import Settings
from bot.upstreams import tiktok_sessions, ttsave_client
from services.download.models import FileRole, MediaFile, Want
from services.download.service import BACKEND_NAMES, DownloadService, Media, build_backends
from services.errors import ServiceError, error_code
from services.http import HttpOptions
from services.links import ShortLinkResolver, TikTokLink, find_links


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `download`."""
    cmd = commands.add_parser("download", help="save a TikTok post's video, photos or sound to a directory")
    cmd.add_argument("url", help="a TikTok post or short link")
    cmd.add_argument(
        "-o", "--output", type=Path, default=Path("."), help="directory to save into (default: .)"
    )
    want = cmd.add_mutually_exclusive_group()
    want.add_argument("--audio", action="store_true", help="only the sound")
    want.add_argument("--original", action="store_true", help="every original file, the sound included")
    cmd.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        help="use only this backend (default: DOWNLOAD__BACKENDS, in order)",
    )
    cmd.set_defaults(handler=download)


async def download(args: argparse.Namespace, settings: Settings) -> int:
    """Download, save the files, print one line per file and the backend that served."""
    link = post_link(args.url)
    if link is None:
        print(f"tiktok-bot: not a TikTok post link: {args.url}", file=sys.stderr)
        return 2
    want = Want.AUDIO if args.audio else Want.ORIGINAL if args.original else Want.VIDEO
    sessions = tiktok_sessions(settings, read_timeout=HttpOptions().read_timeout)
    tiktok = sessions.client()
    ttsave = ttsave_client(settings)
    service = DownloadService(
        build_backends(
            [args.backend] if args.backend else settings.download.backends,
            tiktok_client=tiktok,
            ttsave_client=ttsave,
            ttsave_url=settings.ttsave.url,
            sessions=sessions,
        ),
        max_concurrent=1,
        temp_root=settings.download.temp_dir,
        attempt_timeout=settings.download.timeout,
        resolver=ShortLinkResolver(tiktok, ttl=0).resolve,
    )
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        try:
            media = await service.fetch(link, want, progress=bar.update if bar else None)
        finally:
            if bar is not None:
                bar.finish()
        async with media:
            save(media, link, args.output)
        return 0
    except ServiceError as exc:
        print(f"tiktok-bot: download failed: {exc.message} [{error_code(exc)}]", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tiktok-bot: cannot save into {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        await service.aclose()
        await sessions.aclose()
        await ttsave.aclose()


def save(media: Media, link: TikTokLink, directory: Path) -> list[Path]:
    """Copy the media's files into `directory`, printing `name  type  size` for each and the backend."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = (media.post.id if media.post else None) or link.post_id or link.code or "tiktok"
    photos = [f for f in media.files if f.role is FileRole.PHOTO]
    saved = []
    for file in media.files:
        name = _file_name(stem, file, photos)
        target = directory / name
        shutil.copyfile(file.path, target)
        saved.append(target)
        print(f"{target}  {file.mime}  {human_size(file.size)}")
    tries = ", ".join(f"{a.backend} {a.seconds:.2f}s {a.error_code or 'ok'}" for a in media.attempts)
    print(f"served by {media.backend} ({tries})")
    return saved


def _file_name(stem: str, file: MediaFile, photos: list[MediaFile]) -> str:
    if file.role is FileRole.PHOTO:
        return f"{stem}-{photos.index(file) + 1:02d}{file.extension}"
    return f"{stem}{file.extension}"


def human_size(size: int) -> str:
    """Bytes as B, KB or MB (powers of 1000, as the upload limits are stated)."""
    if size < 1000:
        return f"{size} B"
    if size < 1000 * 1000:
        return f"{size / 1000:.1f} KB"
    return f"{size / 1000 / 1000:.1f} MB"


class ProgressBar:
    """A one-line progress display on a terminal, redrawn at most ten times a second."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = 0.0
        self._drawn = False

    def update(self, received: int, expected: int | None) -> None:
        """Redraw with bytes so far and the total when known."""
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        if expected:
            share = min(1.0, received / expected)
            filled = int(share * 30)
            line = f"[{'#' * filled}{'.' * (30 - filled)}] {human_size(received)} / {human_size(expected)}"
        else:
            line = f"downloading… {human_size(received)}"
        self._out.write(f"\r{line:<70}")
        self._out.flush()
        self._drawn = True

    def finish(self) -> None:
        """Clear the line."""
        if self._drawn:
            self._out.write("\r" + " " * 70 + "\r")
            self._out.flush()


def post_link(text: str) -> TikTokLink | None:
    """The first post or short link in `text`."""
    return next((link for link in find_links(text) if link.has_media), None)
