"""Durable delivery on Discord: SIGKILL the bot mid-burst, start it again: every message and command answered.

The bot runs as `tiktok-bot discord` (real discord.py over the emulator's gateway) in a child process. Link
messages and /post commands arrive; the bot is killed at a seed's moment (right after the events arrived, or
after some replies went out), started again, and stopped with SIGTERM. Checked as on Telegram: all answered,
rows equal requests, duplicates within the concurrency limit, spool and inbox empty, integrity ok.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest

from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.discord import DiscordEmulator
from sandbox.discord.world import StoredMessage
from tests.e2e.crash_rig import CrashRig

CONCURRENCY = 4
POSTS = synthetic_posts(4, size=300_000, serial=8_000)
ENV = {"LIMITS__CONCURRENCY": str(CONCURRENCY), "DOWNLOAD__MAX_CONCURRENT": "2"}
LOADING = 128  # message flag: the deferred "thinking…" placeholder


def answers(emu: DiscordEmulator, channel_id: int, asked: list[int]) -> Counter[int]:
    """Bot messages per request: replies referencing a message, finished follow-ups of an interaction."""
    counts: Counter[int] = Counter()
    wanted = set(asked)
    for m in emu.messages_in(channel_id):
        if m.author_id != emu.world.bot.id or m.flags & LOADING:
            continue
        if m.reference is not None and int(m.reference.get("message_id", 0)) in wanted:
            counts[int(m.reference["message_id"])] += 1
        elif m.interaction_id in wanted:
            counts[m.interaction_id] += 1
    return counts


@pytest.mark.parametrize(("seed", "phase"), [(4, "arrived"), (5, "replying")])
async def test_sigkill_mid_burst_then_restart_answers_every_request(
    tmp_path: Path, seed: int, phase: str
) -> None:
    rng = random.Random(seed)
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        first = rig.start("discord")
        try:
            await emu.transcript.wait_until(
                lambda: bool(emu.sessions and emu.commands(demo.guild_id)), timeout=90
            )
            await asyncio.sleep(0.3)  # READY and the guild reached the bot
            asked: list[int] = []
            for k in range(8):
                for author in (demo.member_id, demo.admin_id):
                    message: StoredMessage = await emu.send_message(
                        demo.channel_id, author, f"look {POSTS[(k + author) % len(POSTS)].url}"
                    )
                    asked.append(message.id)
            for k in range(3):
                inter = await emu.invoke_command(
                    "post", user_id=demo.admin_id, channel_id=demo.channel_id, options={"link": POSTS[k].url}
                )
                asked.append(inter.id)
            if phase == "arrived":
                await asyncio.sleep(rng.uniform(0.02, 0.2))
            else:
                want = rng.randint(1, len(asked) // 2)
                await emu.transcript.wait_until(
                    lambda: len(answers(emu, demo.channel_id, asked)) >= want, timeout=60
                )
            first.kill()
        finally:
            if first.proc.poll() is None:
                first.kill()
        second = rig.start("discord")
        try:
            await emu.transcript.wait_until(
                lambda: all(answers(emu, demo.channel_id, asked)[a] for a in asked), timeout=90
            )
        finally:
            await second.stop()
        counts = answers(emu, demo.channel_id, asked)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        assert duplicates <= CONCURRENCY, counts
        rows = rig.query("SELECT action, outcome FROM usage WHERE action IN ('link', 'post')")
        assert len(rows) == len(asked), rows
        assert {str(o) for _, o in rows} <= {"ok", "rate_limited", "expired"}, rows
        assert rig.query("SELECT count(*) FROM inbox WHERE done_at IS NULL") == [(0,)]
        assert rig.query("PRAGMA integrity_check") == [("ok",)]
        assert rig.leftovers() == []
