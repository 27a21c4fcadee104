"""/stats for the bot's operators (TELEGRAM__ADMINS): today, 7 and 30 days from the usage log."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.chat.i18n import t
from bot.chat.interaction import ChatContext
from bot.chat.stats import PERIODS, backend_lines, stats_block
from bot.telegram.render import html_text
from bot.wiring import App


async def on_stats(message: Message, app: App, ctx: ChatContext) -> None:
    """The usage figures for operators; everyone else is told it is not theirs."""
    async with app.interactions.track(ctx, "stats") as tracker:
        if ctx.user_id not in app.settings.telegram.admins:
            tracker.outcome = "not_allowed"
            await message.reply(html_text(t(ctx.language, "not_allowed")))
            return
        await app.store.usage.flush()  # the figures include everything recorded so far
        blocks = []
        for days, label in PERIODS:
            report = await app.store.stats(days)
            blocks.append("\n".join(html_text(line) for line in stats_block(report, label, ctx.language)))
        blocks.append("\n".join(html_text(line) for line in backend_lines(app.downloads.figures())))
        await message.reply("\n\n".join(f"<pre>{b}</pre>" for b in blocks))


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="admin")
    router.message.register(on_stats, Command("stats"))
    return router
