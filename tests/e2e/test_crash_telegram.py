"""Durable delivery on Telegram: SIGKILL the bot mid-burst, start it again: every message is answered once.

The bot runs as `tiktok-bot telegram` in a child process (real aiogram, long polling or a webhook) against the
in-process emulators. Each seed kills it at another moment of the burst — right after Telegram saw the
updates confirmed, while downloads run, while replies are uploaded — then starts it again and stops it with
SIGTERM. Checked: every message has a reply (its video, or the rate-limit answer), usage rows equal messages,
duplicated replies no more than the concurrency limit, the spool directory empty, the inbox empty, and
SQLite's integrity check ok.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from bot.chat.i18n import t
from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.crash_rig import Child, CrashRig

CONCURRENCY = 4
NOTICES = {t("en", "queued"), t("en", "inbox.late")}
REPLIES = {"sendVideo", "sendMessage", "sendMediaGroup", "sendPhoto", "sendAudio"}
ALL_POSTS = synthetic_posts(18, size=400_000, serial=7_000)
PER_ROUND = 6  # each burst its own posts, so each downloads afresh (the cache would serve repeats)
ENV = {"LIMITS__CONCURRENCY": str(CONCURRENCY), "DOWNLOAD__MAX_CONCURRENT": "2"}


def burst(tg: TelegramEmulator, round_: int) -> list[tuple[int, int]]:
    """36 messages from new users: 8 with 3 links each, one with 12 (over the per-minute limit of 10)."""
    posts = ALL_POSTS[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
    sent: list[tuple[int, int]] = []
    people = [tg.add_user(f"User {round_}.{i}") for i in range(9)]
    plan = [(u, (u + k) % PER_ROUND) for k in range(3) for u in range(8)]
    plan += [(8, k % PER_ROUND) for k in range(12)]
    for user, post in plan:
        chat = tg.private_chat(people[user])
        injected = tg.inject_message(chat, posts[post].url, user=people[user])
        sent.append((chat.id, int(injected.payload["message_id"])))
    return sent


def replies(tg: TelegramEmulator) -> Counter[tuple[int, int]]:
    """Replies per (chat, message), not counting the queue and restart notices."""
    counts: Counter[tuple[int, int]] = Counter()
    for call in tg.transcript(ok=True):
        if call.method not in REPLIES or call.chat_id is None:
            continue
        if call.method == "sendMessage" and call.params.get("text") in NOTICES:
            continue
        reply = call.params.get("reply_parameters") or {}
        if "message_id" in reply:
            counts[(call.chat_id, int(reply["message_id"]))] += 1
    return counts


async def kill_at(
    rig: CrashRig, child: Child, rng: random.Random, phase: str, sent: list[tuple[int, int]]
) -> None:
    """Wait for the phase's moment, then SIGKILL the bot."""
    tg = rig.sandbox.get(TelegramEmulator)
    ttsave, tiktok = rig.sandbox.get(TTSaveEmulator), rig.sandbox.get(TikTokEmulator)
    if phase == "taken":
        # Telegram has seen the first poll confirmed: those updates exist only in the bot's inbox now.
        await tg.wait_until(lambda: len(tg.updates.pending) < len(sent), timeout=60, what="a poll")
        await asyncio.sleep(rng.uniform(0, 0.05))
    elif phase == "downloading":

        def downloads() -> int:
            return sum(ttsave.downloads(p.id) + tiktok.downloads(p.id) for p in ALL_POSTS)

        want = downloads() + rng.randint(1, 4)
        await tg.wait_until(
            lambda: downloads() >= want,
            timeout=60,
            what=f"{want} downloads",
        )
    else:
        want = rng.randint(1, len(sent) // 2)
        await tg.wait_until(
            lambda: sum(1 for m in sent if replies(tg)[m]) >= want, timeout=60, what=f"{want} replies"
        )
    child.kill()


async def check_after_restart(
    rig: CrashRig, sent: list[tuple[int, int]], kills: int
) -> Counter[tuple[int, int]]:
    """Every message answered; rows equal messages; duplicates bounded; nothing left behind."""
    tg = rig.sandbox.get(TelegramEmulator)
    await tg.wait_until(
        lambda: all(replies(tg)[m] for m in sent),
        timeout=120,  # a new process starts first: slow on a loaded machine
        what=f"replies to all {len(sent)} messages ({len(replies(tg))} so far)",
    )
    counts = replies(tg)
    duplicates = sum(n - 1 for m, n in counts.items() if m in sent and n > 1)
    assert duplicates <= CONCURRENCY * kills, counts
    return counts


def check_store(rig: CrashRig, messages: int) -> None:
    """Rows equal messages, inbox empty, nothing in the spool, the file sound."""
    rows = rig.query("SELECT outcome, count(*) FROM usage WHERE action = 'link' GROUP BY outcome")
    assert sum(int(str(n)) for _, n in rows) == messages, rows
    assert {str(o) for o, _ in rows} <= {"ok", "rate_limited"}, rows
    assert rig.query("SELECT count(*) FROM inbox WHERE done_at IS NULL") == [(0,)]
    assert rig.query("PRAGMA integrity_check") == [("ok",)]
    assert rig.leftovers() == []


@pytest.mark.parametrize("seed", [1])
async def test_sigkill_mid_burst_then_restart_answers_every_message(tmp_path: Path, seed: int) -> None:
    """Three bursts, each killed at another moment; each restart answers what the killed run had taken."""
    rng = random.Random(seed)
    async with CrashRig(tmp_path, catalogue_with(ALL_POSTS), ENV) as rig:
        tg = rig.sandbox.get(TelegramEmulator)
        child = rig.start("telegram")
        asked: list[tuple[int, int]] = []
        try:
            await tg.wait_until(lambda: tg.updates.waiting, timeout=90, what="a long poll")
            for round_, phase in enumerate(("taken", "downloading", "uploading")):
                before = replies(tg)
                sent = burst(tg, round_)
                asked += sent
                await kill_at(rig, child, rng, phase, sent)
                # What the killed run left in the inbox and the spool directory is the next one's to handle.
                child = rig.start("telegram")
                counts = await check_after_restart(rig, sent, kills=1)
                assert all(counts[m] == before[m] for m in before)  # earlier rounds' answers are not repeated
        finally:
            await child.stop()
        check_store(rig, len(asked))
        replayed = rig.query("SELECT count(*) FROM inbox_log WHERE event = 'replayed'")
        assert int(str(replayed[0][0])) >= 1


async def test_webhook_kill_between_store_and_200_is_redelivered_and_answered_once(tmp_path: Path) -> None:
    async with CrashRig(tmp_path, catalogue_with(ALL_POSTS), ENV) as rig:
        tg = rig.sandbox.get(TelegramEmulator)
        tg.webhook_retry_delay = 0.05
        port = _free_port()
        hook = {
            "TELEGRAM__WEBHOOK_URL": f"http://127.0.0.1:{port}/tg",
            "TELEGRAM__WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        }
        # The first run dies inside its webhook handler: after the update is stored, before the 200.
        first = rig.start("telegram", env=hook, module="tests.e2e.kill_after_store")
        try:
            await tg.wait_until(lambda: tg.api.webhook is not None, timeout=90, what="setWebhook")
            user = tg.add_user("Hooked")
            chat = tg.private_chat(user)
            injected = tg.inject_message(chat, ALL_POSTS[0].url, user=user)
            assert await first.wait_exit(60) == -signal.SIGKILL
        finally:
            if first.proc.poll() is None:
                first.kill()
        assert not tg.updates.is_confirmed(injected.update_id)  # no 2xx: Telegram still holds it
        assert rig.query("SELECT count(*) FROM inbox WHERE done_at IS NULL") == [(1,)]
        second = rig.start("telegram", env=hook)
        try:
            key = (chat.id, int(injected.payload["message_id"]))
            await tg.wait_until(lambda: replies(tg)[key] >= 1, timeout=120, what="the reply")
            await tg.wait_confirmed(injected, timeout=60)  # redelivered to the new process and taken
            await asyncio.sleep(0.3)  # room for a second answer, were there one
        finally:
            await second.stop()
        assert replies(tg)[key] == 1
        assert [d.status for d in tg.deliveries if d.update_id == injected.update_id][-1] == 200
        check_store(rig, 1)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
