"""Telegram emulator uploads: throughput, and peak memory staying flat as files grow (they are streamed)."""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramEntityTooLarge
from aiogram.types import FSInputFile

from sandbox.telegram import TelegramEmulator

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (client and server both live here)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sparse_file(directory: Path, size: int) -> Path:
    path = directory / f"{size}.mp4"
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


async def upload(bot: Bot, chat_id: int, path: Path) -> float:
    started = time.perf_counter()
    await bot.send_document(chat_id, FSInputFile(path, chunk_size=MB))
    return time.perf_counter() - started


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        emu = TelegramEmulator(local_api=True)
        await emu.start()
        bot = Bot(emu.token, session=AiohttpSession(api=TelegramAPIServer.from_base(emu.base_url)))
        chat = emu.private_chat().id
        try:
            await upload(bot, chat, sparse_file(directory, MB))  # warm up connections and imports
            for size_mb in (10, 50, 200, 500):
                before = peak_rss_mb()
                seconds = await upload(bot, chat, sparse_file(directory, size_mb * MB))
                print(
                    f"upload {size_mb:>4} MB: {seconds:5.2f} s, {size_mb / seconds:6.0f} MB/s, "
                    f"peak RSS {peak_rss_mb():6.0f} MB (+{peak_rss_mb() - before:.0f})"
                )
            emu.local_api = False
            started = time.perf_counter()
            try:
                await upload(bot, chat, sparse_file(directory, 50 * MB + 1))
            except TelegramEntityTooLarge:
                print(f"refuse 50 MiB + 1 with 413: {time.perf_counter() - started:.2f} s")
        finally:
            await bot.session.close()
            await emu.stop()


if __name__ == "__main__":
    asyncio.run(main())
