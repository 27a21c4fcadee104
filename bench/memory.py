"""Memory: the bot process's peak RSS while relaying a 48 MiB video, minus its idle RSS (target ≤ 4 MiB).

The bot runs as a real `tiktok-bot telegram` child process against the emulators in this process. After it
starts, it relays one small video (so first-use imports and pools are paid for), then sits idle; its VmRSS
then is the idle figure. Its peak (VmHWM) is reset through /proc/<pid>/clear_refs, a user pastes the link of
a 48 MiB synthetic post, and once the video has arrived VmHWM is the peak. VmRSS is also sampled every
2 ms as a cross-check (and where clear_refs is not allowed).

The upload follows the download (pipelined relay), so the figure covers both at once. One run per backend
(DOWNLOAD__BACKENDS alone): web (exact size, sized upload) and ttsave (chunked upload after the moov).
Run: .venv/bin/python bench/memory.py [--size-mib 48] [--backends web,ttsave]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from rig import Rig, status_kb

from sandbox.catalogue import CATALOGUE, catalogue_with, synthetic_posts

MIB = 1024 * 1024
SMALL = next(p for p in CATALOGUE.posts.values() if p.hashtags == ("pasta", "cooking"))


async def sample(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    """Keep the highest VmRSS seen in `peak[0]` until `stop`."""
    while not stop.is_set():
        peak[0] = max(peak[0], status_kb(pid, "VmRSS"))
        await asyncio.sleep(0.002)


async def main(size_mib: int, backend: str, serial: int = 3_000) -> dict[str, float]:
    [big] = synthetic_posts(1, size=size_mib * MIB, serial=serial)
    catalogue = catalogue_with([big])
    async with Rig(catalogue, {"DOWNLOAD__BACKENDS": backend}) as rig:
        tg = rig.telegram
        bot = await rig.start_bot()
        try:
            user = tg.add_user("Mem")
            chat = tg.private_chat(user)
            mark = tg.mark()
            tg.inject_message(chat, SMALL.url, user=user)  # warm up: imports, pools, the metadata token
            await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
            await asyncio.sleep(1.0)  # let the usage log flush and the loop settle
            idle = status_kb(bot.pid, "VmRSS")
            reset = True
            try:
                Path(f"/proc/{bot.pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current
            except OSError:
                reset = False
            stop = asyncio.Event()
            peak = [idle]
            sampler = asyncio.create_task(sample(bot.pid, stop, peak))
            mark = tg.mark()
            started = time.monotonic()
            tg.inject_message(chat, big.url, user=user)
            call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=120)
            seconds = call.answered - started
            await asyncio.sleep(0.2)  # the reply's tail: the cache write, the usage row
            stop.set()
            await sampler
            hwm = status_kb(bot.pid, "VmHWM") if reset else peak[0]
            if not call.ok or call.files[0].size != size_mib * MIB:
                raise RuntimeError(f"unexpected reply: {call.status} {call.error}")
        finally:
            await bot.stop()
    return {
        "idle_mb": idle / 1024,
        "peak_mb": max(hwm, peak[0]) / 1024,
        "sampled_peak_mb": peak[0] / 1024,
        "growth_mb": (max(hwm, peak[0]) - idle) / 1024,
        "seconds": seconds,
        "hwm_reset": float(reset),
    }


def report(figures: dict[str, float], size_mib: int, backend: str) -> None:
    verdict = "met" if figures["growth_mb"] <= 4 else "MISSED"
    print(f"memory, {backend}: the bot process relaying a {size_mib} MiB video ({figures['seconds']:.2f} s)")
    print(f"  idle RSS   {figures['idle_mb']:6.1f} MiB")
    how = "VmHWM after clear_refs" if figures["hwm_reset"] else "sampled VmRSS"
    sampled = figures["sampled_peak_mb"]
    print(f"  peak RSS   {figures['peak_mb']:6.1f} MiB ({how}; VmRSS sampled every 2 ms: {sampled:.1f})")
    print(f"  growth     {figures['growth_mb']:6.1f} MiB (target ≤ 4 MiB: {verdict})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=48)
    parser.add_argument("--backends", default="web,ttsave", help="one run per backend, alone")
    args = parser.parse_args()
    for index, name in enumerate(args.backends.split(",")):
        report(asyncio.run(main(args.size_mib, name, 3_000 + index)), args.size_mib, name)
