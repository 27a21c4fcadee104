"""Inline mode: `@bot <tiktok link>` in any chat offers the post's media as cached results."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.types import (
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultCachedAudio,
    InlineQueryResultCachedPhoto,
    InlineQueryResultCachedVideo,
    InlineQueryResultUnion,
    InputTextMessageContent,
)

from bot.chat.cards import post_card
from bot.chat.errors import error_text
from bot.chat.interaction import ChatContext
from bot.chat.variants import photo_index, photo_variants
from bot.telegram.render import render_card
from bot.telegram.storage import upload_to_storage
from bot.wiring import App
from services.download.models import Want
from services.errors import ServiceError
from services.links import find_links
from services.metadata.models import Post

log = logging.getLogger("tiktok_bot.telegram")

# Results of one post are the same for everyone for a while; Telegram may reuse them for this long.
CACHE_TIME = 300
MAX_RESULTS = 50


def _results(
    post_id: str, refs: dict[str, str], post: Post | None, lang: str
) -> list[InlineQueryResultUnion]:
    caption = render_card(post_card(post, lang), lang) if post else None
    title = post.author and f"@{post.author}" if post else "TikTok"
    results: list[InlineQueryResultUnion] = []
    if "video" in refs:
        results.append(
            InlineQueryResultCachedVideo(
                id=f"v{post_id}", video_file_id=refs["video"], title=title or "TikTok", caption=caption
            )
        )
    for key in photo_variants(refs)[: MAX_RESULTS - 1]:
        results.append(
            InlineQueryResultCachedPhoto(
                id=f"p{post_id}-{photo_index(key)}", photo_file_id=refs[key], caption=caption
            )
        )
    if "audio" in refs:
        results.append(
            InlineQueryResultCachedAudio(id=f"a{post_id}", audio_file_id=refs["audio"], caption=caption)
        )
    return results[:MAX_RESULTS]


def _article(post_id: str, post: Post | None, url: str, lang: str) -> InlineQueryResultArticle:
    text = render_card(post_card(post, lang), lang, limit=4096) if post else url
    return InlineQueryResultArticle(
        id=f"l{post_id}",
        title=f"@{post.author}" if post and post.author else "TikTok",
        description=(post.description[:100] if post else url),
        url=url,
        input_message_content=InputTextMessageContent(message_text=text),
    )


async def on_inline(query: InlineQuery, bot: Bot, app: App, ctx: ChatContext) -> None:
    """Answer with cached media; upload once to the storage chat when needed; else a stats article."""
    links = [link for link in find_links(query.query, limit=1) if link.has_media]
    if not links:
        await query.answer([], cache_time=CACHE_TIME, is_personal=False)
        return
    storage_chat = app.settings.telegram.storage_chat_id
    try:
        async with app.interactions.admit(ctx, "inline", links[0].post_id or links[0].code) as tracker:
            link = await app.resolver.post_link(links[0])
            assert link.post_id is not None
            tracker.target = link.post_id
            refs, post = await app.flow.cached_refs("telegram", link.post_id, Want.VIDEO)
            if refs:
                tracker.cache_hit, tracker.backend = True, "cache"
            elif storage_chat is not None:
                refs, post, tracker.backend, tracker.bytes_sent = await upload_to_storage(
                    bot, app, link, storage_chat, ctx.language
                )
            elif app.metadata is not None:
                answer = await app.metadata.post(link)
                post, tracker.backend, tracker.units = answer.value, answer.provider, answer.units
            results = _results(link.post_id, refs, post, ctx.language) if refs else []
            if not results:
                results = [_article(link.post_id, post, link.url, ctx.language)]
            await query.answer(results, cache_time=CACHE_TIME, is_personal=False)
    except ServiceError as exc:
        await query.answer(
            [
                InlineQueryResultArticle(
                    id="error",
                    title=error_text(exc, ctx.language),
                    input_message_content=InputTextMessageContent(message_text=error_text(exc, ctx.language)),
                )
            ],
            cache_time=5,
            is_personal=True,
        )


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="inline")
    router.inline_query.register(on_inline)
    return router
