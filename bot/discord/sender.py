"""Delivers media into one Discord destination: attachments within the upload limit, link re-sends, errors.

Two destinations share one sender: a reply to a pasted message in its channel, thread or DM
(`ChannelReply`), and the follow-ups of a deferred slash command (`InteractionReply`). Re-sends of a post
sent before post the attachment URLs Discord gave the first upload (no download, no upload, no size limit);
a URL whose signed `ex=` expiry has passed is a stale reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import discord

from bot.chat.cards import post_card
from bot.chat.errors import error_text, group_error_text
from bot.chat.flow import Sent, StaleReference
from bot.chat.interaction import ReplyFailed
from bot.chat.variants import is_photo, photo_variant, photo_variants
from bot.discord.errors import ephemeral
from bot.discord.render import CONTENT_LIMIT, card_embed
from services.download.models import MediaFile, MediaKind, Want
from services.download.service import Media
from services.errors import TooLarge, UpstreamError
from services.links import TikTokLink
from services.metadata.models import Post
from services.store.chats import ChatPrefs
from services.store.inbox import DEFERRED

log = logging.getLogger("tiktok_bot.discord")

FILES_PER_MESSAGE = 10
# A message holds up to 10 embeds; the card is one, so at most 9 attachment links unfurl beside it.
LINKS_PER_MESSAGE = 9
# Discord shows "typing…" for 10 s; renew it a little before it lapses.
TYPING_EVERY = 8.0
# A cached URL must outlive the moment it is posted (clients refresh expired attachment links later).
EXPIRY_MARGIN = 60.0
DISCORD_TOO_LARGE = 40005


class Destination(Protocol):
    """Where a sender's messages go: a channel reply or an interaction's follow-ups."""

    @property
    def upload_limit(self) -> int:
        """Bytes the files of one message may add up to."""

    async def send(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: Sequence[discord.File] = (),
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        """Post one message."""

    async def notice(self, text: str) -> None:
        """A short status line (queued) that the answer will follow."""

    async def fail(self, text: str) -> None:
        """Tell the user something failed (ephemeral where the platform allows)."""

    async def typing(self) -> None:
        """Show that the bot is working until the next message is sent."""

    async def aclose(self) -> None:
        """Stop anything still running (typing)."""


def _message_kwargs(
    content: str | None,
    embed: discord.Embed | None,
    files: Sequence[discord.File],
    view: discord.ui.View | None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if view is not None:
        kwargs["view"] = view
    if content:
        kwargs["content"] = content
    if embed is not None:
        kwargs["embed"] = embed
    if files:
        kwargs["files"] = list(files)
    return kwargs


class ChannelReply:
    """Replies to a message in its channel, thread or DM, with typing kept alive while the bot works."""

    def __init__(self, message: discord.Message, upload_limit: int) -> None:
        self.message = message
        self._upload_limit = upload_limit
        self._typing: asyncio.Task[None] | None = None

    @property
    def upload_limit(self) -> int:
        """The guild's upload limit (10 MiB in DMs)."""
        return self._upload_limit

    async def send(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: Sequence[discord.File] = (),
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        """A reply that does not ping, and survives the original being deleted meanwhile."""
        self._stop_typing()
        return await self.message.channel.send(
            reference=self.message.to_reference(fail_if_not_exists=False),
            mention_author=False,
            **_message_kwargs(content, embed, files, view),
        )

    async def notice(self, text: str) -> None:
        """A plain reply."""
        await self.send(content=text)

    async def fail(self, text: str) -> None:
        """A plain reply (a channel has no ephemeral messages)."""
        await self.send(content=text)

    async def typing(self) -> None:
        """Start "typing…", renewed until the next reply or `aclose`."""
        if self._typing is None or self._typing.done():
            self._typing = asyncio.create_task(self._keep_typing(), name="discord-typing")

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.message.channel.typing()
            except Exception as exc:  # typing is a courtesy (429, 403, a lost connection): the reply goes on
                log.debug("typing not shown: %s", type(exc).__name__)
            await asyncio.sleep(TYPING_EVERY)

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def aclose(self) -> None:
        """Stop typing."""
        task, self._typing = self._typing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class InteractionReply:
    """Follow-ups of a slash command deferred with "thinking…"; failures go out as ephemeral messages."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction
        # Discord's first follow-up after a defer fills the "thinking…" message and keeps its visibility,
        # so an ephemeral failure must delete that message first.
        self.pending = False

    async def defer(self) -> None:
        """Acknowledge at once with a public "thinking…" message (the 3-second rule)."""
        # A replayed command was deferred by the process that took it: its follow-ups are still open.
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(thinking=True)
            client = self.interaction.client
            deliveries = getattr(getattr(client, "app", None), "deliveries", None)
            if deliveries is not None:
                deliveries.note(DEFERRED)  # a replay may answer it through follow-ups
        self.pending = True

    @property
    def upload_limit(self) -> int:
        """The interaction's own attachment size limit."""
        return self.interaction.filesize_limit

    async def send(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: Sequence[discord.File] = (),
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        """A follow-up (the first one fills the deferred message)."""
        kwargs = _message_kwargs(content, embed, files, view)
        message = await self.interaction.followup.send(wait=True, **kwargs)
        self.pending = False
        return message

    async def notice(self, text: str) -> None:
        """Put the status into the "thinking…" message; the answer follows as a new message."""
        if self.pending:
            await self.interaction.edit_original_response(content=text)
            self.pending = False

    async def fail(self, text: str) -> None:
        """An ephemeral message only the user sees (answering directly if nothing was sent yet)."""
        await ephemeral(self.interaction, text, loading=self.pending)
        self.pending = False

    async def typing(self) -> None:
        """Nothing: the deferred response already shows "thinking…"."""

    async def aclose(self) -> None:
        """Nothing to stop."""


@dataclass(slots=True)
class _Batch:
    """Files of one message, with the cache variant of each."""

    files: list[MediaFile] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def pack(
    items: Sequence[tuple[str, MediaFile]], limit: int, per_message: int = FILES_PER_MESSAGE
) -> list[_Batch]:
    """Files in order, grouped into messages of at most `per_message` files and `limit` bytes each."""
    batches: list[_Batch] = []
    for variant, file in items:
        if file.size > limit:
            raise TooLarge(size=file.size, limit=limit)
        batch = batches[-1] if batches else None
        if batch is None or len(batch.files) >= per_message or batch.size + file.size > limit:
            batch = _Batch()
            batches.append(batch)
        batch.files.append(file)
        batch.variants.append(variant)
    return batches


def link_expiry(url: str) -> float | None:
    """The Unix time a signed Discord CDN URL expires (its hex `ex` parameter), if it has one."""
    values = parse_qs(urlsplit(url).query).get("ex")
    if not values:
        return None
    try:
        return float(int(values[0], 16))
    except ValueError:
        return None


def check_fresh(refs: Mapping[str, str], now: float | None = None) -> None:
    """Raise StaleReference unless every URL is signed and valid for a while yet."""
    moment = time.time() if now is None else now
    for variant, url in refs.items():
        expiry = link_expiry(url)
        if expiry is None or expiry <= moment + EXPIRY_MARGIN:
            raise StaleReference(f"the {variant} link has expired")


def link_batches(urls: Sequence[str], first_budget: int) -> list[str]:
    """Attachment links as message contents: up to LINKS_PER_MESSAGE each, within the content limit."""
    contents: list[str] = []
    current: list[str] = []
    budget = first_budget
    for url in urls:
        joined = "\n".join([*current, url])
        if current and (len(current) >= LINKS_PER_MESSAGE or len(joined) > budget):
            contents.append("\n".join(current))
            current, budget = [], CONTENT_LIMIT
        current.append(url)
    if current:
        contents.append("\n".join(current))
    return contents


class DiscordSender:
    """The MediaSender for one Discord destination."""

    def __init__(self, destination: Destination, *, lang: str, prefs: ChatPrefs, terse: bool) -> None:
        self.destination = destination
        self.lang = lang
        self.prefs = prefs
        self.terse = terse  # guild channels get one short line per failure; DMs and commands the details

    @property
    def upload_limit(self) -> int:
        """Bytes one message's files may add up to here."""
        return self.destination.upload_limit

    def embed(self, post: Post | None) -> discord.Embed | None:
        """The post's card, or None when captions are off or nothing is known."""
        if not self.prefs.captions or post is None:
            return None
        return card_embed(post_card(post, self.lang), self.lang)

    @contextlib.asynccontextmanager
    async def working(self, want: Want) -> AsyncIterator[None]:
        """Show "typing…" while downloading and uploading (the next message ends it)."""
        with contextlib.suppress(Exception):  # decoration: never fails the reply
            await self.destination.typing()
        yield

    async def send_text(self, text: str) -> None:
        """A status line (the queue notice)."""
        with _replying():
            await self.destination.notice(text)

    async def send_error(self, error: BaseException, link: TikTokLink | None) -> None:
        """One short line in guild channels; the specific answer in DMs and to commands."""
        text = group_error_text(error, self.lang) if self.terse else error_text(error, self.lang)
        with _replying():
            await self.destination.fail(text)

    async def send_too_large(self, post: Post | None, link: TikTokLink, error: TooLarge) -> None:
        """The stats card and the link instead of a file that does not fit."""
        note = error_text(error, self.lang)
        card = card_embed(post_card(post, self.lang), self.lang) if post is not None else None
        with _replying():
            await self.destination.send(content=f"{note}\n<{post.url if post else link.url}>", embed=card)

    # --- uploads -------------------------------------------------------------------------------------------

    async def send_media(self, media: Media, post: Post | None, want: Want) -> Sent:
        """Upload the downloaded files (the card on the first message); return their URLs for the cache."""
        with _replying():
            return await self._upload(media, post or media.post, want)

    async def _upload(self, media: Media, post: Post | None, want: Want) -> Sent:
        if want is Want.AUDIO or media.kind is MediaKind.AUDIO:
            items = [("audio", _first(media.files, "audio"))]
        elif media.kind is MediaKind.PHOTOS:
            photos = [f for f in media.files if f.role == "photo"]
            items = [(photo_variant(i), f) for i, f in enumerate(photos)]
            audio = next((f for f in media.files if f.role == "audio"), None)
            if audio is not None and self.prefs.slideshow_sound:
                items.append(("audio", audio))
        else:
            items = [("video", _first(media.files, "video"))]
        batches = pack(items, self.upload_limit)
        sent = Sent()
        embed = self.embed(post)
        stem = post.id if post is not None else "tiktok"
        for index, batch in enumerate(batches):
            files = [
                discord.File(f.path, filename=_filename(stem, variant, f))
                for variant, f in zip(batch.variants, batch.files, strict=True)
            ]
            try:
                message = await self.destination.send(embed=embed if index == 0 else None, files=files)
            except discord.HTTPException as exc:
                if exc.status == 413 or exc.code == DISCORD_TOO_LARGE:
                    raise TooLarge(size=batch.size, limit=self.upload_limit) from exc
                raise
            finally:
                for file in files:
                    file.close()
            by_name = {a.filename: a.url for a in message.attachments}
            for variant, f in zip(batch.variants, batch.files, strict=True):
                url = by_name.get(_filename(stem, variant, f))
                if url is not None:
                    sent.refs[variant] = url
            sent.bytes_sent += batch.size
        if len(sent.refs) != len(items):
            sent.refs = {}  # a partial set would re-send a post with pieces missing
        return sent

    # --- re-sends by attachment link -----------------------------------------------------------------------

    async def send_cached(self, post: Post | None, refs: Mapping[str, str], want: Want) -> Sent:
        """Post the attachment links of the first upload (Discord unfurls them); stale if any expired."""
        if want is Want.AUDIO:
            urls = [refs["audio"]] if "audio" in refs else []
        elif "video" in refs:
            urls = [refs["video"]]
        else:
            urls = [refs[k] for k in photo_variants(refs)]
            if urls and "audio" in refs and self.prefs.slideshow_sound:
                urls.append(refs["audio"])
        if not urls:
            raise StaleReference("no usable reference")
        check_fresh({str(i): url for i, url in enumerate(urls)})
        embed = self.embed(post)
        with _replying():
            for index, content in enumerate(link_batches(urls, CONTENT_LIMIT)):
                await self.destination.send(content=content, embed=embed if index == 0 else None)
        return Sent()


@contextlib.contextmanager
def _replying() -> Iterator[None]:
    """A refusal by Discord itself (429 past the budget, no access, a 5xx) becomes ReplyFailed."""
    # discord.py waits out 429s itself, up to 5 tries and `max_ratelimit_timeout` seconds a wait (the bot sets
    # it to LIMITS__REPLY_BUDGET); past that it raises RateLimited, or HTTPException 429 after the fifth.
    try:
        yield
    except discord.RateLimited as exc:
        raise ReplyFailed("flood", f"rate limited for {exc.retry_after:.0f}s") from exc
    except discord.Forbidden as exc:
        raise ReplyFailed("forbidden", exc.text) from exc
    except discord.DiscordServerError as exc:
        raise ReplyFailed("server_error", exc.text) from exc
    except discord.HTTPException as exc:
        if exc.status == 429:
            raise ReplyFailed("flood", exc.text) from exc
        raise


def _first(files: Sequence[MediaFile], role: str) -> MediaFile:
    for f in files:
        if f.role == role:
            return f
    raise UpstreamError(f"the backend returned no {role} file")


def _filename(stem: str, variant: str, file: MediaFile) -> str:
    suffix = variant.replace(":", "_") if is_photo(variant) else variant
    return f"{stem}_{suffix}{file.extension}"
