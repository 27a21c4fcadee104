"""Crash: 500-message bursts with the bot killed by SIGKILL at a random moment of each, then started again.

Per kill: a fresh sandbox and database; the bot (`tiktok-bot telegram` / `tiktok-bot discord`, a child
process) takes a burst of link messages from 100 users over 50 posts; at a random moment (right after the
messages arrived, or once a random share of them was answered) it is SIGKILLed, `--while-down` more messages
are sent while it is down, it is started again, and
stopped with SIGTERM once every message has an answer (or nothing moved for 30 s). Figures per platform,
over all kills: unanswered messages (target 0), duplicated replies (target ≤ LIMITS__CONCURRENCY per kill),
usage rows lost (messages minus rows of `link` requests, target 0), restart-to-first-answer (from starting
the new process to its first reply; includes Python's start-up), and what was left in the inbox and spool.
On Discord also the messages not stored when the process died (still in its socket, or sent while it was
down): answered after the next process RESUMEd the dead gateway session ("recovered"), or "never taken".

Run: .venv/bin/python bench/crash.py [--kills 10] [--messages 500] [--while-down 20]
     [--platforms telegram,discord] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig import BIN, ROOT

from bot.chat.i18n import t
from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.discord import DiscordEmulator
from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import TelegramEmulator

CONCURRENCY = 8  # LIMITS__CONCURRENCY, the default
NOTICES = {t("en", "queued"), t("en", "inbox.late")}
REPLIES = {"sendVideo", "sendMessage", "sendMediaGroup", "sendPhoto", "sendAudio"}
QUIET_S = 30.0
DISCORD_EPOCH_MS = 1_420_070_400_000


class Child:
    """The bot in its own process."""

    def __init__(self, workdir: Path, env: dict[str, str], frontend: str) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()
        empty = workdir / "empty.env"
        empty.write_text("")
        self.proc = subprocess.Popen(
            [str(BIN / "tiktok-bot"), "--env-file", str(empty), frontend],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(self.proc.communicate, timeout=60)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            print(err, file=sys.stderr)


class Platform:
    """How to run one burst against one platform's emulator and read what was answered."""

    name = ""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def ready(self) -> None:
        raise NotImplementedError

    async def burst(self, urls: list[str], users: int) -> None:
        raise NotImplementedError

    async def more(self, urls: list[str]) -> None:
        """More messages from the same users and chats (sent while the bot is down)."""
        raise NotImplementedError

    def answers(self) -> Counter[Any]:
        """Answers per request (notices left out), and the time of each request's first answer."""
        raise NotImplementedError

    def first_answer_after(self, child: Child) -> float | None:
        """Seconds from the child's start to the first answer after it."""
        raise NotImplementedError

    async def wait(self, condition: Callable[[], bool], within: float) -> None:
        raise NotImplementedError


class Telegram(Platform):
    name = "telegram"

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.tg = sandbox.get(TelegramEmulator)
        self.asked: list[tuple[int, int]] = []

    async def ready(self) -> None:
        await self.tg.wait_until(lambda: self.tg.updates.waiting, timeout=120, what="a long poll")

    async def burst(self, urls: list[str], users: int) -> None:
        self.people = [self.tg.add_user(f"User {i}") for i in range(users)]
        await self.more(urls)

    async def more(self, urls: list[str]) -> None:
        for i, url in enumerate(urls):
            user = self.people[(len(self.asked) + i) % len(self.people)]
            chat = self.tg.private_chat(user)
            injected = self.tg.inject_message(chat, url, user=user)
            self.asked.append((chat.id, int(injected.payload["message_id"])))

    def _replies(self) -> list[tuple[tuple[int, int], float]]:
        found = []
        for call in self.tg.transcript(ok=True):
            if call.method not in REPLIES or call.chat_id is None:
                continue
            if call.method == "sendMessage" and call.params.get("text") in NOTICES:
                continue
            reply = call.params.get("reply_parameters") or {}
            if "message_id" in reply:
                found.append(((call.chat_id, int(reply["message_id"])), call.at))
        return found

    def answers(self) -> Counter[Any]:
        wanted = set(self.asked)
        return Counter(key for key, _ in self._replies() if key in wanted)

    def first_answer_after(self, child: Child) -> float | None:
        times = [at for _, at in self._replies() if at >= child.started]  # the emulator's monotonic clock
        return min(times) - child.started if times else None

    async def wait(self, condition: Callable[[], bool], within: float) -> None:
        await self.tg.wait_until(condition, timeout=within, what="condition")


class Discord(Platform):
    name = "discord"

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.emu = sandbox.get(DiscordEmulator)
        assert self.emu.demo is not None
        self.demo = self.emu.demo
        self.asked: list[int] = []
        self.channels: list[int] = []

    async def ready(self) -> None:
        await self.emu.transcript.wait_until(
            lambda: bool(self.emu.sessions and self.emu.commands(self.demo.guild_id)), timeout=120
        )
        await asyncio.sleep(0.5)  # READY and the guild reached the bot

    async def burst(self, urls: list[str], users: int) -> None:
        # Ten messages a channel at most: the per-chat limit (30 a minute) is not what this measures.
        self.channels = [
            self.emu.add_text_channel(self.demo.guild_id, f"crash-{i}").id for i in range(len(urls) // 10 + 1)
        ]
        self.people = []
        for i in range(users):
            user = self.emu.add_user(f"user-{i}")
            self.emu.add_member(self.demo.guild_id, user.id)
            self.people.append(user.id)
        await asyncio.sleep(0.2)  # the new channels and members reached the bot
        for i, url in enumerate(urls):
            message = await self.emu.send_message(self.channels[i // 10], self.people[i % users], url)
            self.asked.append(message.id)

    async def more(self, urls: list[str]) -> None:
        # One more message in each channel at most: still under the per-chat limit.
        for i, url in enumerate(urls):
            channel = self.channels[i % len(self.channels)]
            message = await self.emu.send_message(channel, self.people[i % len(self.people)], url)
            self.asked.append(message.id)

    def _replies(self) -> list[tuple[int, float]]:
        found = []
        bot_id = self.emu.world.bot.id
        for channel in self.channels:
            for m in self.emu.messages_in(channel):
                if m.author_id != bot_id or m.reference is None or m.content in NOTICES:
                    continue
                # A snowflake carries its creation time: ms since the Discord epoch in its top bits.
                found.append(
                    (int(m.reference.get("message_id", 0)), ((m.id >> 22) + DISCORD_EPOCH_MS) / 1000)
                )
        return found

    def answers(self) -> Counter[Any]:
        wanted = set(self.asked)
        return Counter(key for key, _ in self._replies() if key in wanted)

    def first_answer_after(self, child: Child) -> float | None:
        times = [at for _, at in self._replies() if at >= child.started_wall]  # messages keep wall time
        return min(times) - child.started_wall if times else None

    async def wait(self, condition: Callable[[], bool], within: float) -> None:
        await self.emu.transcript.wait_until(condition, timeout=within)


async def one_kill(
    name: str, rng: random.Random, messages: int, users: int, posts: int, while_down: int
) -> dict[str, Any]:
    """One burst, a SIGKILL at a random moment, more messages while down, a restart; the round's figures."""
    fixtures = synthetic_posts(posts, size=256_000, serial=9_000)
    urls = [fixtures[i % posts].url for i in range(messages)]
    rng.shuffle(urls)
    extra = [fixtures[(messages + i) % posts].url for i in range(while_down)]  # no draws: same kill moments
    sandbox = Sandbox(all_emulators(catalogue_with(fixtures)))
    await sandbox.start()
    with tempfile.TemporaryDirectory(prefix="tiktok-crash-") as tmp:
        workdir = Path(tmp)
        (workdir / "downloads").mkdir()
        base = {k: v for k, v in os.environ.items() if "__" not in k and k != "UPSTREAM_ROUTES"}
        # BENCH_BOT_PYTHONPATH runs another checkout's bot against these emulators (before/after figures).
        other = os.environ.get("BENCH_BOT_PYTHONPATH")
        env = {
            **base,
            **({"PYTHONPATH": other} if other else {}),
            **sandbox.env(),
            "DATABASE__PATH": str(workdir / "bot.sqlite3"),
            "DOWNLOAD__TEMP_DIR": str(workdir / "downloads"),
            "LOG__LEVEL": "ERROR",
        }
        platform: Platform = Telegram(sandbox) if name == "telegram" else Discord(sandbox)
        try:
            first = Child(workdir, env, name)
            await platform.ready()
            await platform.burst(urls, users)
            share = rng.choice([0.0, rng.uniform(0.05, 0.9)])
            if share == 0.0:
                await asyncio.sleep(rng.uniform(0.0, 0.3))
            else:
                want = int(share * messages)
                await platform.wait(lambda: len(platform.answers()) >= want, within=300)
            answered_before = len(platform.answers())
            first.kill()
            with sqlite3.connect(workdir / "bot.sqlite3") as db:
                stored = {str(k) for (k,) in db.execute("SELECT key FROM inbox")}
            await platform.more(extra)  # sent while the bot is down
            messages = len(platform.asked)
            second = Child(workdir, env, name)
            await platform.ready()  # start-up first: on a loaded machine it alone can take tens of seconds
            progress = -1
            while True:
                count = len(platform.answers())
                if count >= messages:
                    break
                if count == progress:
                    break  # nothing moved for QUIET_S
                progress = count
                try:
                    await platform.wait(lambda n=count: len(platform.answers()) > n, within=QUIET_S)
                except TimeoutError:
                    break
            first_answer = platform.first_answer_after(second)
            await second.stop()
        finally:
            await sandbox.stop()
        with sqlite3.connect(workdir / "bot.sqlite3") as db:
            rows = db.execute("SELECT count(*) FROM usage WHERE action = 'link'").fetchone()[0]
            open_entries = db.execute("SELECT count(*) FROM inbox WHERE done_at IS NULL").fetchone()[0]
            replayed = db.execute("SELECT count(*) FROM inbox_log WHERE event = 'replayed'").fetchone()[0]
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        spool = workdir / "downloads" / "tiktok-bot"
        leftovers = sum(1 for _ in spool.rglob("*")) if spool.exists() else 0
    counts = platform.answers()
    answered = len(counts)
    # Discord events not stored before the kill reach the next process only through its RESUME of the dead
    # session (bot/discord/resume.py): "recovered" if answered, "never taken" if not.
    discord_side = isinstance(platform, Discord)
    unstored = [m for m in platform.asked if discord_side and f"message:{m}" not in stored]
    never_taken = [m for m in unstored if not counts[m]]
    return {
        "killed_after": answered_before,
        "unanswered": messages - answered - len(never_taken),
        "never_taken": len(never_taken),
        "recovered": len(unstored) - len(never_taken),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "rows_lost": max(0, answered - rows),
        "extra_rows": max(0, rows - messages),
        "restart_to_first_answer_s": first_answer if first_answer is not None else float("nan"),
        "replayed": replayed,
        "inbox_open": open_entries,
        "spool_left": leftovers,
        "integrity": integrity,
    }


def report(name: str, rounds: list[dict[str, Any]]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    kills = len(rounds)
    unanswered = sum(r["unanswered"] for r in rounds)
    duplicates = [r["duplicates"] for r in rounds]
    lost = sum(r["rows_lost"] for r in rounds)
    firsts = [
        r["restart_to_first_answer_s"]
        for r in rounds
        if r["restart_to_first_answer_s"] == r["restart_to_first_answer_s"]
    ]
    print(f"{name}: {kills} kills")
    for i, r in enumerate(rounds, 1):
        print(
            f"  kill {i}: after {r['killed_after']} answers; replayed {r['replayed']}, unanswered "
            f"{r['unanswered']} (+{r['never_taken']} never taken; {r['recovered']} not stored at the kill "
            f"and recovered by RESUME), duplicates {r['duplicates']}, "
            f"rows lost {r['rows_lost']} "
            f"(extra {r['extra_rows']}), first answer {r['restart_to_first_answer_s']:.2f} s after restart, "
            f"inbox open {r['inbox_open']}, spool left {r['spool_left']}, integrity {r['integrity']}"
        )
    print(f"  unanswered      {unanswered} of the messages taken (target 0: {verdict(unanswered == 0)})")
    never = sum(r["never_taken"] for r in rounds)
    recovered = sum(r["recovered"] for r in rounds)
    if name == "discord":
        print(
            f"  never taken     {never} (not stored when the process died and never answered); "
            f"{recovered} such messages recovered by the RESUME of the dead session"
        )
    print(
        f"  duplicates      {sum(duplicates)} in all, at most {max(duplicates)} per kill "
        f"(target ≤ {CONCURRENCY} per kill: {verdict(max(duplicates) <= CONCURRENCY)})"
    )
    print(f"  rows lost       {lost} (target 0: {verdict(lost == 0)})")
    if firsts:
        print(
            f"  restart to first answer  median {statistics.median(firsts):.2f} s, worst {max(firsts):.2f} s "
            "(process start-up included)"
        )
    left = sum(r["inbox_open"] + r["spool_left"] for r in rounds)
    print(
        f"  left behind     {left} inbox entries and spool files after SIGTERM "
        f"(target 0: {verdict(left == 0)})"
    )


async def main(kills: int, messages: int, platforms: list[str], seed: int, while_down: int) -> None:
    for name in platforms:
        rng = random.Random(seed)
        rounds = []
        for index in range(kills):
            rounds.append(await one_kill(name, rng, messages, users=100, posts=50, while_down=while_down))
            r = rounds[-1]
            print(  # as it goes: a long run shows its progress
                f"{name} kill {index + 1}: unanswered {r['unanswered']} (+{r['never_taken']} never taken), "
                f"duplicates {r['duplicates']}, rows lost {r['rows_lost']}",
                flush=True,
            )
        report(name, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--platforms", default="telegram,discord")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--while-down", type=int, default=20, help="messages sent while the bot is down")
    args = parser.parse_args()
    asyncio.run(main(args.kills, args.messages, args.platforms.split(","), args.seed, args.while_down))
