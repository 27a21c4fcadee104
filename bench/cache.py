"""Cache: a link the bot has sent before goes out by file_id — how fast, and with how many upstream requests.

The bot (`tiktok-bot telegram`, a child process) first relays the post once. Then N users, one at a time,
paste the same link (a private chat each: the default limit is 10 links per user per minute); the time runs
from the message being injected to the emulator's answer to the bot's sendVideo. Upstream requests are the
requests the TikTok, TTSave, EnsembleData and Research emulators served meanwhile.
Targets: p50 ≤ 10 ms, 0 requests.

Run: .venv/bin/python bench/cache.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from rig import Rig, percentile

from sandbox.catalogue import CATALOGUE
from sandbox.telegram import TelegramEmulator

CLIP = next(p for p in CATALOGUE.posts.values() if p.hashtags == ("pasta", "cooking"))


async def main(runs: int) -> dict[str, float]:
    async with Rig() as rig:
        tg = rig.telegram
        upstreams = [e for e in rig.sandbox.emulators if not isinstance(e, TelegramEmulator)]
        bot = await rig.start_bot()
        times: list[float] = []
        try:
            first = tg.add_user("First")
            chat = tg.private_chat(first)
            mark = tg.mark()
            tg.inject_message(chat, CLIP.url, user=first)
            call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
            assert call.ok and call.files[0].uploaded
            await asyncio.sleep(0.3)  # the cache write happens after the reply
            before = sum(len(e.requests) for e in upstreams)
            for index in range(runs):
                user = tg.add_user(f"Again {index}")
                chat = tg.private_chat(user)
                mark = tg.mark()
                started = time.monotonic()
                tg.inject_message(chat, CLIP.url, user=user)
                call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
                if not call.ok or call.files[0].uploaded:
                    raise RuntimeError(f"not a file_id re-send: {call.status} {call.error}")
                times.append(call.answered - started)
            requests = sum(len(e.requests) for e in upstreams) - before
        finally:
            await bot.stop()
    return {
        "p50_ms": percentile(times, 50) * 1000,
        "p95_ms": percentile(times, 95) * 1000,
        "max_ms": max(times) * 1000,
        "requests": requests,
        "runs": runs,
    }


def report(figures: dict[str, float]) -> None:
    ok_time = figures["p50_ms"] <= 10
    ok_requests = figures["requests"] == 0
    print(f"cache: a repeated link, re-sent by file_id ({figures['runs']:.0f} runs)")
    print(
        f"  inject → sendVideo  p50 {figures['p50_ms']:.1f} ms  p95 {figures['p95_ms']:.1f} ms  "
        f"max {figures['max_ms']:.1f} ms  (target p50 ≤ 10 ms: {'met' if ok_time else 'MISSED'})"
    )
    print(f"  upstream requests   {figures['requests']:.0f} (target 0: {'met' if ok_requests else 'MISSED'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    report(asyncio.run(main(args.runs)))
