"""A loopback Telegram Bot API for one bot, driven and inspected by tests and the demo."""

from sandbox.telegram.emulator import ANY, SANDBOX_TOKEN, Delivery, Injected, TelegramEmulator
from sandbox.telegram.methods import InlineQuery, Press
from sandbox.telegram.transcript import Call, SentFile
from sandbox.telegram.world import Chat, ChatType, Topic, User

__all__ = [
    "ANY",
    "SANDBOX_TOKEN",
    "Call",
    "Chat",
    "ChatType",
    "Delivery",
    "Injected",
    "InlineQuery",
    "Press",
    "SentFile",
    "TelegramEmulator",
    "Topic",
    "User",
]
