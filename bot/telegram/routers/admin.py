"""/stats for the bot's operators (TELEGRAM__ADMINS): today, 7 and 30 days from the usage log."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.chat.i18n import t
from bot.chat.interaction import ChatContext
from bot.telegram.render import html_text
from bot.wiring import App


async def on_stats(message: Message, app: App, ctx: ChatContext) -> None:
    """The usage figures for operators; everyone else is told it is not theirs."""
    async with app.operator_stats.report(ctx, app.settings.telegram.admins) as shown:
        if not shown.allowed:
            await message.reply(html_text(t(ctx.language, "not_allowed")))
        else:
            blocks = ("\n".join(html_text(line) for line in block) for block in shown.blocks)
            await message.reply("\n\n".join(f"<pre>{b}</pre>" for b in blocks))


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="admin")
    router.message.register(on_stats, Command("stats"))
    return router
