"""Start every emulator together and compute the environment the bot needs to use them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from sandbox.base import Emulator

E = TypeVar("E", bound=Emulator)


def all_emulators() -> list[Emulator]:
    """One fresh instance of every emulator the sandbox offers."""
    # Imported here so importing the runner stays cheap.
    from sandbox.discord import DiscordEmulator
    from sandbox.ensembledata import EnsembleDataEmulator
    from sandbox.research import ResearchEmulator
    from sandbox.telegram import TelegramEmulator
    from sandbox.tiktok import TikTokEmulator
    from sandbox.ttsave import TTSaveEmulator

    return [
        TikTokEmulator(),
        TTSaveEmulator(),
        EnsembleDataEmulator(),
        ResearchEmulator(),
        TelegramEmulator(),
        DiscordEmulator(),
    ]


class Sandbox:
    """A set of running emulators and the environment that points the bot at them."""

    def __init__(self, emulators: Sequence[Emulator] | None = None) -> None:
        self.emulators = list(all_emulators() if emulators is None else emulators)

    def get(self, kind: type[E]) -> E:
        """The running emulator of one class."""
        for emu in self.emulators:
            if isinstance(emu, kind):
                return emu
        raise KeyError(kind.__name__)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start all emulators; with a port, they take consecutive ports from it."""
        for index, emu in enumerate(self.emulators):
            await emu.start(host, port + index if port else 0)

    async def stop(self) -> None:
        """Stop all emulators."""
        for emu in reversed(self.emulators):
            await emu.stop()

    def env(self) -> dict[str, str]:
        """Environment variables pointing the bot at the running emulators."""
        env: dict[str, str] = {}
        routes: dict[str, str] = {}
        for emu in self.emulators:
            env.update(emu.env())
            for pattern in emu.routed_hosts():
                routes[pattern] = emu.base_url
        if routes:
            env["UPSTREAM_ROUTES"] = json.dumps(routes, separators=(",", ":"))
        return env

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
