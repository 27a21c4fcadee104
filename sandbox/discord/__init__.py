"""A loopback Discord for end-to-end tests: REST API v10, gateway, attachment CDN and a control API.

Point discord.py 2 at a running `DiscordEmulator`. discord.py has no setting for this; both knobs are class
attributes, so set them before `login()`/`start()` and restore them afterwards (they are process-global):

    import discord, yarl
    discord.http.Route.BASE = emu.api_url  # "http://127.0.0.1:PORT/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)  # "ws://127.0.0.1:PORT/gateway"
    bot = commands.Bot(command_prefix=..., intents=..., guild_ready_timeout=0.05)
    await bot.login(emu.token)
    task = asyncio.create_task(bot.connect())

`Route.BASE` is read whenever a Route is built: REST, interaction callbacks and webhook follow-ups alike.
`DEFAULT_GATEWAY` is where `Client.connect` dials first and where it falls back after INVALID_SESSION; READY's
`resume_gateway_url` points back at the emulator, so RESUME stays local too. An AutoShardedClient reads the
URL from `GET /gateway/bot`, which also answers with the emulator's address. `discord.http._set_api_version()`
rewrites `Route.BASE`: do not call it after pointing discord.py here. In the sandbox the same values come from
DISCORD__API_URL and DISCORD__GATEWAY_URL (`emu.env()`); DISCORD__TOKEN is the emulator's fixed token.

The gateway speaks JSON, plain or `compress=zlib-stream`, which discord.py asks for unless the zstandard
package is installed; then it asks for zstd-stream, which the emulator refuses with HTTP 400.
"""

from sandbox.discord.emulator import SANDBOX_TOKEN, DemoWorld, DiscordEmulator, Interaction
from sandbox.discord.messages import DiscordError
from sandbox.discord.transcript import Call, Transcript, UploadedFile
from sandbox.discord.world import (
    BOT_PERMISSIONS,
    DM_UPLOAD_LIMIT,
    EVERYONE_PERMISSIONS,
    TIER_UPLOAD_LIMITS,
    Intent,
    MessageFlag,
    Perm,
    StoredAttachment,
    StoredMessage,
)

__all__ = [
    "BOT_PERMISSIONS",
    "DM_UPLOAD_LIMIT",
    "EVERYONE_PERMISSIONS",
    "SANDBOX_TOKEN",
    "TIER_UPLOAD_LIMITS",
    "Call",
    "DemoWorld",
    "DiscordEmulator",
    "DiscordError",
    "Intent",
    "Interaction",
    "MessageFlag",
    "Perm",
    "StoredAttachment",
    "StoredMessage",
    "Transcript",
    "UploadedFile",
]
