"""Discord end-to-end fixtures: the real bot (`run_discord`) connected to the sandbox's Discord emulator.

Built on tests/e2e/conftest.py (`sandbox`, `settings`, `app`): `discord_bot` (commands synced to the demo
guild, as the sandbox environment says), `discord_global` (synced globally, so they work in DMs too) and
`usage` (the usage table, filterable). Tests import the helpers (`DiscordRun`, post ids, `sha`, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from bot.discord.app import run_discord
from bot.discord.client import TikTokBot
from bot.wiring import App
from sandbox.blobs import Blob
from sandbox.catalogue import CATALOGUE, T0, FixturePost, Status, post_id_at
from sandbox.discord import DemoWorld, DiscordEmulator, Interaction, StoredMessage
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import usage_rows

CLIP = post_id_at(T0, 1)  # a 3 s H.264 clip (45 KB)
BIG = post_id_at(T0 + 86_400, 2)  # H.264 renditions of 64, 30, 12 and 6 MB
SLIDES = post_id_at(T0 + 2 * 86_400, 3)  # three photos and a sound
ALBUM = post_id_at(T0 + 3 * 86_400, 4)  # twelve photos and a sound
BY_STATUS = {p.status: p.id for p in CATALOGUE.posts.values() if p.status is not Status.OK}


def post(post_id: str) -> FixturePost:
    """A catalogue post."""
    return CATALOGUE.posts[post_id]


def url(post_id: str) -> str:
    """The post's canonical link, as a user would paste it."""
    return post(post_id).url


def sha(name: str) -> str:
    """SHA-256 of a committed sandbox media file."""
    return Blob.of_file(name).sha256()


def rendition_sha(post_id: str, gear: str) -> str:
    """SHA-256 of one (possibly synthesised) rendition of a post."""
    fixture = post(post_id)
    rendition = next(r for r in fixture.renditions if r.gear == gear)
    return TikTokEmulator.rendition_blob(fixture, rendition).sha256()


def file_sha(path: str) -> str:
    """SHA-256 of a file on disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DiscordRun:
    """The running bot and the emulator it is connected to."""

    app: App
    sandbox: Sandbox
    emu: DiscordEmulator
    demo: DemoWorld
    bot: TikTokBot
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def tiktok(self) -> TikTokEmulator:
        """The TikTok web/CDN emulator."""
        return self.sandbox.get(TikTokEmulator)

    @property
    def ttsave(self) -> TTSaveEmulator:
        """The TTSave emulator."""
        return self.sandbox.get(TTSaveEmulator)

    def media_downloads(self, post_id: str) -> int:
        """Media downloads of a post from either upstream (TikTok CDN requests and TTSave streams)."""
        return self.tiktok.downloads(post_id) + self.ttsave.downloads(post_id)

    async def paste(
        self, text: str, *, channel_id: int | None = None, author_id: int | None = None
    ) -> StoredMessage:
        """A user posts `text` (by default bob in the demo guild's channel)."""
        return await self.emu.send_message(
            channel_id or self.demo.channel_id, author_id or self.demo.member_id, text
        )

    async def reply_to(
        self,
        message: StoredMessage,
        predicate: Callable[[StoredMessage], bool] | None = None,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The bot's first reply to `message` (matching `predicate`)."""

        def check(m: StoredMessage) -> bool:
            refers = m.reference is not None and m.reference.get("message_id") == str(message.id)
            return refers and (predicate is None or predicate(m))

        # Generous: a reply may follow a million-hash challenge search on a loaded CI machine.
        return await self.emu.wait_for_message(message.channel_id, check, after=message.id, timeout=timeout)

    async def command(
        self,
        command_name: str,
        /,
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        locale: str | None = None,
        **options: object,
    ) -> Interaction:
        """A user runs a slash command (by default bob in the demo guild's channel)."""
        return await self.emu.invoke_command(
            command_name,
            user_id=user_id or self.demo.member_id,
            channel_id=channel_id or self.demo.channel_id,
            options=options or None,
            locale=locale,
        )

    async def answered(self, inter: Interaction, *, count: int = 1) -> list[StoredMessage]:
        """Wait until the bot has shown `count` finished messages for an interaction; return them."""

        def done() -> bool:
            messages = [m for m in self.emu.interaction_messages(inter.id) if not m.deleted]
            return len([m for m in messages if not m.flags & 128]) >= count

        await self.emu.transcript.wait_until(done, timeout=10)
        return [m for m in self.emu.interaction_messages(inter.id) if not m.deleted]

    async def settled(self) -> None:
        """Wait until the bot has no job in flight (its usage rows are recorded by then)."""
        async with asyncio.timeout(10):
            while self.bot.jobs:  # noqa: ASYNC110 -- jobs end inside discord.py's tasks, which signal nothing
                await asyncio.sleep(0.005)

    async def shutdown(self) -> None:
        """Set the stop event and wait for run_discord to return."""
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


async def start_discord(app: App, sandbox: Sandbox, *, grace: float = 5.0) -> DiscordRun:
    """Run the bot as `tiktok-bot discord` does and wait until it is ready."""
    emu = sandbox.get(DiscordEmulator)
    assert emu.demo is not None
    bots: list[TikTokBot] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_discord(app, stop, grace=grace, guild_ready_timeout=0.01, on_start=bots.append)
    )
    async with asyncio.timeout(10):
        while not (bots and bots[0].is_ready()):
            if task.done():
                task.result()
                raise AssertionError("run_discord returned before the bot was ready")
            await asyncio.sleep(0.005)
    return DiscordRun(app, sandbox, emu, emu.demo, bots[0], stop, task)


@pytest.fixture
async def discord_bot(app: App, sandbox: Sandbox) -> AsyncIterator[DiscordRun]:
    """The Discord bot running against the emulator, stopped (gracefully) after the test."""
    run = await start_discord(app, sandbox)
    try:
        yield run
    finally:
        if not run.task.done():
            await run.shutdown()
        with contextlib.suppress(Exception):
            run.task.result()


@pytest.fixture
async def discord_global(app: App, sandbox: Sandbox) -> AsyncIterator[DiscordRun]:
    """As `discord_bot`, with commands synced globally (DISCORD__GUILD_IDS empty), so they work in DMs too."""
    app.settings.discord.guild_ids = []
    run = await start_discord(app, sandbox)
    try:
        yield run
    finally:
        if not run.task.done():
            await run.shutdown()


class UsageTable:
    """The usage table of the test's database, as an operator reads it."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def rows(self, **where: object) -> list[dict[str, object]]:
        """Rows in order (after a flush), only those whose columns equal the given values."""
        return [r for r in await usage_rows(self.app) if all(r.get(k) == v for k, v in where.items())]


@pytest.fixture
def usage(app: App) -> UsageTable:
    """The usage table."""
    return UsageTable(app)
