"""After a SIGKILL the next process RESUMEs the dead gateway session and answers what it never read.

The bot runs as `tiktok-bot discord` (real discord.py over the emulator's gateway) in a child process that is
killed with SIGKILL. The emulator keeps the dead session's dispatches as Discord does (a few minutes); the new
process identifies a fresh session, RESUMEs the old one on a side connection, stores what it missed in the
inbox and ends it. Also: an expired session (nothing to resume: a clear log line, the bot works on), a slash
command deferred before the kill (answered through its follow-up webhook after the restart), and messages that
arrive while a process starts (taken once, never replayed by that same process).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.discord import DiscordEmulator
from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.crash_rig import Child, CrashRig
from tests.e2e.test_crash_discord import answers, inbox_empty

CONCURRENCY = 4
POSTS = synthetic_posts(6, size=200_000, serial=8_500)
ENV = {"LIMITS__CONCURRENCY": str(CONCURRENCY), "DOWNLOAD__MAX_CONCURRENT": "2"}
STARTUP = 120.0  # a child's start-up on a loaded machine


async def poll(condition: object, what: str, within: float = STARTUP) -> None:
    """Wait for a condition on the child's database (a file written by another process signals nothing)."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def connected(emu: DiscordEmulator, child_sessions: set[str]) -> str:
    """The id of the next session that connects (a new child's), once its commands are synced."""
    demo = emu.demo
    assert demo is not None
    await emu.transcript.wait_until(
        lambda: (
            any(s.connected and s.id not in child_sessions for s in emu.sessions)
            and bool(emu.commands(demo.guild_id))
        ),
        timeout=STARTUP,
    )
    session = next(s for s in emu.sessions if s.connected and s.id not in child_sessions)
    child_sessions.add(session.id)
    return session.id


def saved(rig: CrashRig, session_id: str, seq: int) -> bool:
    """Whether the child saved this session at `seq` or later."""
    rows = rig.query("SELECT seq FROM discord_sessions WHERE session_id = ?", [session_id])
    return bool(rows) and int(str(rows[0][0])) >= seq


async def links(emu: DiscordEmulator, channel_id: int, round_: int, count: int) -> list[int]:
    demo = emu.demo
    assert demo is not None
    asked = []
    for k in range(count):
        author = (demo.member_id, demo.admin_id)[k % 2]
        message = await emu.send_message(channel_id, author, f"see {POSTS[(k + round_) % len(POSTS)].url}")
        asked.append(message.id)
    return asked


async def test_events_queued_for_a_killed_process_are_resumed_and_answered(tmp_path: Path) -> None:
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        seen: set[str] = set()
        child: Child = rig.start("discord")
        try:
            first = await connected(emu, seen)
            channel = emu.add_text_channel(demo.guild_id, "resume").id
            position = emu.gateway.sessions[first].seq
            await poll(lambda: saved(rig, first, position), "the session saved")
            # Some of these are read and stored, some still in the socket when the process dies.
            before = await links(emu, channel, 0, 6)
            child.kill()
            # Sent to the dead session: only a RESUME gets them to the bot.
            after = await links(emu, channel, 1, 6)
            assert emu.gateway.sessions[first].seq > position
            child = rig.start("discord")
            second = await connected(emu, seen)
            asked = before + after
            await emu.transcript.wait_until(
                lambda: all(answers(emu, channel, asked)[x] for x in asked), timeout=STARTUP
            )
            await inbox_empty(rig)
            # The side connection ended the old session with 1000; the new one is saved in its place.
            assert first not in emu.gateway.sessions
            await poll(lambda: saved(rig, second, 1), "the new session saved")
            assert [r[0] for r in rig.query("SELECT session_id FROM discord_sessions")] == [second]
        finally:
            err = await child.stop()
        counts = answers(emu, channel, asked)
        assert all(counts[x] == 1 for x in after), counts
        assert sum(n - 1 for n in counts.values()) <= CONCURRENCY, counts
        assert "resumed the previous gateway session of shard 0" in err, err
        rows = rig.query("SELECT count(*) FROM usage WHERE action = 'link'")
        assert rows == [(len(asked),)]
        # A clean stop hands the session over (closed with 4000, not 1000): it stays resumable, its row too.
        assert [r[0] for r in rig.query("SELECT session_id FROM discord_sessions")] == [second]
        assert second in emu.gateway.sessions and not emu.gateway.sessions[second].connected
        assert rig.query("PRAGMA integrity_check") == [("ok",)]


async def test_an_expired_session_is_logged_and_the_bot_works_on(tmp_path: Path) -> None:
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        seen: set[str] = set()
        child = rig.start("discord")
        try:
            first = await connected(emu, seen)
            channel = emu.add_text_channel(demo.guild_id, "expired").id
            await poll(lambda: saved(rig, first, emu.gateway.sessions[first].seq), "the session saved")
            child.kill()
            await emu.transcript.wait_until(lambda: not emu.gateway.sessions[first].connected, timeout=30)
            emu.gateway.resume_timeout = 0.0  # Discord gave up on the dead session: it gets nothing more
            lost = await links(emu, channel, 0, 1)
            assert first not in emu.gateway.sessions
            child = rig.start("discord")
            await connected(emu, seen)
            asked = await links(emu, channel, 1, 2)
            await emu.transcript.wait_until(
                lambda: all(answers(emu, channel, asked)[x] for x in asked), timeout=STARTUP
            )
            # The new process tried the old session once it was ready itself, and forgot it.
            await poll(
                lambda: not rig.query("SELECT 1 FROM discord_sessions WHERE session_id = ?", [first]), ""
            )
        finally:
            err = await child.stop()
        assert (
            "could not be resumed" in err and "messages sent to the bot while it was down are lost" in err
        ), err
        assert answers(emu, channel, lost) == Counter()
        assert first not in [r[0] for r in rig.query("SELECT session_id FROM discord_sessions")]


async def test_a_deferred_command_killed_before_its_follow_up_is_answered_after_restart(
    tmp_path: Path,
) -> None:
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        # Discord's 3 s for the defer is not what this measures: a child on a loaded machine may take longer
        # to defer, and an undeferred command is rightly expired. The follow-ups' 15 minutes stay as they are.
        emu.callback_deadline = 60.0
        # The stats lookup hangs: the command is deferred ("thinking…") and stays unanswered until the kill.
        rig.sandbox.get(EnsembleDataEmulator).fault_next("slow", delay=300)
        seen: set[str] = set()
        child = rig.start("discord")
        try:
            await connected(emu, seen)
            inter = await emu.invoke_command(
                "post", user_id=demo.member_id, channel_id=demo.channel_id, options={"link": POSTS[0].url}
            )
            key = f"interaction:{inter.id}"
            await poll(
                lambda: rig.query("SELECT state FROM inbox WHERE key = ?", [key]) == [("deferred",)],
                "the command deferred and noted",
            )
            assert inter.response_type == 5 and not inter.followup_ids
            calls_before = len(emu.transcript)
            child.kill()
            child = rig.start("discord")
            await emu.transcript.wait_until(
                lambda: bool(answers(emu, demo.channel_id, [inter.id])[inter.id]), timeout=STARTUP
            )
            await inbox_empty(rig)
        finally:
            await child.stop()
        followups = [
            c
            for c in emu.calls(interaction_id=inter.id, since=calls_before)
            if c.method in ("POST", "PATCH") and c.path.startswith("/api/v10/webhooks/")
        ]
        assert followups, emu.interaction_responses(inter.id)
        assert rig.query("SELECT action, outcome FROM usage WHERE action = 'post'") == [("post", "ok")]


async def test_messages_taken_while_starting_are_not_replayed_by_the_same_process(tmp_path: Path) -> None:
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        channel = emu.add_text_channel(demo.guild_id, "early").id
        # Slow downloads: the messages are still being answered when the start-up replay looks at the inbox.
        rig.sandbox.get(TTSaveEmulator).fault_next("slow", count=4, delay=4.0)
        seen: set[str] = set()
        child = rig.start("discord")
        try:
            await connected(emu, seen)
            # READY is out; discord.py still waits for GUILD_CREATEs (2 s) before it calls itself ready and
            # the start-up replay runs: these arrive in between and are taken live.
            asked = await links(emu, channel, 0, 4)
            await emu.transcript.wait_until(
                lambda: all(answers(emu, channel, asked)[x] for x in asked), timeout=STARTUP
            )
            await inbox_empty(rig)
        finally:
            await child.stop()
        assert answers(emu, channel, asked) == Counter(dict.fromkeys(asked, 1))
        assert rig.query("SELECT count(*) FROM inbox_log WHERE event = 'replayed'") == [(0,)]
        assert rig.query("SELECT count(*) FROM usage WHERE action = 'link'") == [(len(asked),)]


async def test_a_clean_stop_leaves_its_session_to_the_next_process(tmp_path: Path) -> None:
    async with CrashRig(tmp_path, catalogue_with(POSTS), ENV) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        seen: set[str] = set()
        child = rig.start("discord")
        try:
            first = await connected(emu, seen)
            channel = emu.add_text_channel(demo.guild_id, "deploy").id
            asked = await links(emu, channel, 0, 2)
            await emu.transcript.wait_until(
                lambda: all(answers(emu, channel, asked)[x] for x in asked), timeout=STARTUP
            )
            await child.stop()  # SIGTERM: a deploy
            assert rig.query("SELECT count(*) FROM inbox WHERE done_at IS NULL") == [(0,)]
            assert first in emu.gateway.sessions and 1000 not in emu.gateway.closes
            while_down = await links(emu, channel, 1, 3)
            child = rig.start("discord")
            await connected(emu, seen)
            await emu.transcript.wait_until(
                lambda: all(answers(emu, channel, while_down)[x] for x in while_down), timeout=STARTUP
            )
            await inbox_empty(rig)
            sql = "SELECT 1 FROM discord_sessions WHERE session_id = ?"
            await poll(lambda: not rig.query(sql, [first]), "the handed-over session forgotten")
        finally:
            err = await child.stop()
        assert answers(emu, channel, asked + while_down) == Counter(dict.fromkeys(asked + while_down, 1))
        assert "resumed the previous gateway session of shard 0" in err, err
        assert rig.query("SELECT count(*) FROM usage WHERE action = 'link'") == [(5,)]
