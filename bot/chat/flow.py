"""The link-to-media flow both frontends share: resolution, the sent-media cache, download and upload.

A frontend supplies a `MediaSender` that knows its platform's upload calls; everything else — which
links, in what order, whether a cached reference can be re-sent, what to do when it is stale or the file is
too large — lives here once. Limits and the usage row are `Interactions`' (bot/chat/interaction.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError

from bot.chat.inbox import Deliveries, current_entry
from bot.chat.interaction import ChatContext, Interactions, ReplyFailed, Tracker
from bot.chat.variants import variant_prefix
from services.download.growing import GrowingFile
from services.download.models import Quality, Want
from services.download.service import DownloadService, Media
from services.errors import ServiceError, ShuttingDown, TooLarge
from services.links import ShortLinkResolver, TikTokLink
from services.metadata.models import Post
from services.metadata.service import MetadataService
from services.ratelimit import ConcurrencyGate
from services.shared import FlightLocks
from services.shared.memory import MemoryFlightLocks
from services.store import Store
from services.store.chats import ChatPrefs

log = logging.getLogger("tiktok_bot.flow")

QueuedNotice = Callable[[], Awaitable[object]]


class StaleReference(Exception):
    """The platform rejected a cached file reference; the flow downloads afresh."""


@dataclass(slots=True)
class Sent:
    """What a sender delivered: references to cache (variant -> ref) and bytes uploaded."""

    refs: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0


class MediaSender(Protocol):
    """A platform's way of delivering media into one chat."""

    prefs: ChatPrefs  # the chat's settings (captions, sound, quality...)

    @property
    def upload_limit(self) -> int:
        """Bytes one upload may carry in this destination."""

    def working(self, want: Want) -> AbstractAsyncContextManager[object]:
        """Show that the bot is working (chat action, typing) for as long as the block runs; never raises."""

    async def send_cached(self, post: Post | None, refs: Mapping[str, str], want: Want) -> Sent:
        """Re-send from cached references; raise StaleReference if the platform refuses one."""

    async def send_media(self, media: Media, post: Post | None, want: Want) -> Sent:
        """Upload downloaded media with its caption; return references worth caching."""

    async def send_too_large(self, post: Post | None, link: TikTokLink, error: TooLarge) -> None:
        """Tell the chat the media is over the limit, with the stats and the link."""

    async def send_error(self, error: BaseException, link: TikTokLink | None) -> None:
        """Tell the chat one link failed (the sender knows how terse to be in this chat)."""


@runtime_checkable
class StreamingSender(MediaSender, Protocol):
    """A sender that can upload a video while it is still downloading."""

    async def send_stream(self, stream: GrowingFile, post: Post | None) -> Sent:
        """Upload a growing video with its caption; fail (posting nothing) if its download fails."""


# The post's metadata beside its cached media references (SQLite / PostgreSQL, and Redis's hot layer).
_POST_JSON = TypeAdapter(Post)


def _post_to_json(post: Post) -> str:
    return _POST_JSON.dump_json(post).decode()


def _post_from_json(text: str) -> Post | None:
    try:
        return _POST_JSON.validate_json(text)
    except ValidationError:
        return None  # written by an older shape: the caption is taken afresh


POST_VARIANT = "post"


class LinkFlow:
    """Turns links in a chat into media in that chat, once per post when it can."""

    def __init__(
        self,
        *,
        resolver: ShortLinkResolver,
        downloads: DownloadService,
        store: Store,
        interactions: Interactions,
        gate: ConcurrencyGate,
        metadata: MetadataService | None = None,
        locks: FlightLocks | None = None,
        deliveries: Deliveries | None = None,
        quality: Quality = Quality.COMPATIBLE,
    ) -> None:
        self.quality = quality  # DOWNLOAD__QUALITY: what a chat left on "auto" gets
        self.resolver = resolver
        self.interactions = interactions
        self.deliveries = deliveries
        self.downloads = downloads
        self.store = store
        self.gate = gate
        self.metadata = metadata
        # Per post and kind; in Redis a lease, so a burst spread over replicas still downloads once.
        self.locks: FlightLocks = locks if locks is not None else MemoryFlightLocks()

    async def deliver_all(
        self,
        ctx: ChatContext,
        links: Sequence[TikTokLink],
        sender: MediaSender,
        *,
        want: Want = Want.VIDEO,
        action: str = "link",
        on_queued: QueuedNotice | None = None,
    ) -> list[str]:
        """Deliver each link's media in order, each post once; every failure is answered and logged."""
        seen: set[str] = set()
        return [
            await self.deliver(ctx, link, sender, want=want, action=action, on_queued=on_queued, seen=seen)
            for link in links
        ]

    async def deliver(
        self,
        ctx: ChatContext,
        link: TikTokLink,
        sender: MediaSender,
        *,
        want: Want = Want.VIDEO,
        action: str = "link",
        on_queued: QueuedNotice | None = None,
        seen: set[str] | None = None,
    ) -> str:
        """Deliver one link's media; answer and log any failure. Returns the logged outcome."""
        tracker = Tracker(target=link.post_id or link.code or link.url)
        try:
            async with self.interactions.track(ctx, action, tracker=tracker):
                await self.interactions.check_limits(ctx)
                async with self.slot(on_queued):
                    resolved = await self.resolver.post_link(link)
                    assert resolved.post_id is not None
                    tracker.target = resolved.post_id
                    if seen is not None:
                        if resolved.post_id in seen:
                            tracker.outcome = "duplicate"  # a short and a long link to one post: one reply
                            return tracker.outcome
                        seen.add(resolved.post_id)
                    await self.send_post(ctx.platform, resolved, sender, want, tracker)
        except ReplyFailed as exc:
            # The chat refuses us (flood past the budget, blocked): an error reply would fare no better.
            _log_reply_failed(exc)
        except TooLarge as exc:
            await self._answer_too_large(sender, link, exc)
        except ServiceError as exc:
            await self._answer(sender, exc, link)
        except asyncio.CancelledError:
            # Shutting down mid-delivery: say so rather than leave the chat waiting, then stop.
            await asyncio.shield(self._answer(sender, ShuttingDown(), link))
            raise
        except Exception as exc:
            log.exception("unexpected failure")
            await self._answer(sender, exc, link)
        return tracker.outcome

    @asynccontextmanager
    async def slot(self, on_queued: QueuedNotice | None = None) -> AsyncIterator[None]:
        """A concurrency slot; serving an inbox entry, it is kept until the entry's completion is written."""
        deliveries = self.deliveries
        if deliveries is None or current_entry() is None:
            async with self.gate.slot(on_queued):
                yield
            return
        if deliveries.holds_slot():
            yield  # the entry's next link: the slot it took for its first one
            return
        held = self.gate.slot(on_queued)
        await held.__aenter__()
        deliveries.release_on_completion(lambda: held.__aexit__(None, None, None))
        yield

    def sending(self) -> None:
        """A reply is about to go out for the current inbox entry (a replay from here may repeat it)."""
        if self.deliveries is not None:
            self.deliveries.note_sending()

    async def _answer(self, sender: MediaSender, exc: BaseException, link: TikTokLink | None) -> None:
        self.sending()
        try:
            await sender.send_error(exc, link)
        except ReplyFailed as failed:
            log.warning("could not send the error reply: %s", failed.outcome)
        except Exception:
            log.exception("could not send the error reply")

    async def _answer_too_large(self, sender: MediaSender, link: TikTokLink, exc: TooLarge) -> None:
        post: Post | None = None
        if self.metadata is not None and link.post_id:
            try:
                post = (await self.metadata.post(link)).value
            except ServiceError:
                post = None
        self.sending()
        try:
            await sender.send_too_large(post, link, exc)
        except ReplyFailed as failed:
            log.warning("could not send the too-large reply: %s", failed.outcome)
        except Exception:
            log.exception("could not send the too-large reply")

    async def send_post(
        self, platform: str, link: TikTokLink, sender: MediaSender, want: Want, tracker: Tracker
    ) -> None:
        """Send a resolved post's media: by cached references when they work, else download and upload."""
        post_id = link.post_id
        assert post_id is not None
        quality = self.quality_for(sender.prefs)
        prefix = variant_prefix(want, quality)
        # One delivery per post and kind at a time: a burst of the same link downloads and uploads once,
        # and everyone after the first is served from the cache it filled.
        async with self.locks.hold(f"{platform}:{post_id}:{prefix}"):
            if await self._send_from_cache(platform, post_id, sender, want, tracker, quality):
                return
            if want is Want.VIDEO and isinstance(sender, StreamingSender):
                async with sender.working(want):
                    await self._relay(platform, link, sender, tracker, quality)
                return
            async with (
                sender.working(want),
                await self.downloads.fetch(
                    link, want, size_limit=sender.upload_limit, quality=quality
                ) as media,
            ):
                tracker.backend = media.backend
                post = await self._complete(link, media.post, tracker)
                self.sending()
                sent = await sender.send_media(media, post, want)
            tracker.bytes_sent = sent.bytes_sent
            await self._remember(platform, post_id, prefix, sent, post)

    async def _relay(
        self,
        platform: str,
        link: TikTokLink,
        sender: StreamingSender,
        tracker: Tracker,
        quality: Quality = Quality.COMPATIBLE,
    ) -> None:
        """Download a video and upload it at once: the upload follows the download when a backend can say
        the video's size and shape up front, else it starts when the download ends (as `send_post`)."""
        post_id = link.post_id
        assert post_id is not None
        announced: asyncio.Queue[GrowingFile] = asyncio.Queue()
        fetch = asyncio.create_task(
            self.downloads.fetch(
                link,
                Want.VIDEO,
                size_limit=sender.upload_limit,
                quality=quality,
                on_stream=announced.put_nowait,
            )
        )
        # A backend that cannot tell the post's stats (TTSave) leaves the caption to the metadata providers:
        # ask them while the download starts, so the caption is ready when the upload can begin.
        early_post = (
            asyncio.create_task(self._complete(link, None, tracker))
            if self.metadata is not None and not self.downloads.first_reads_post
            else None
        )

        async def caption_post(backend_post: Post | None) -> Post | None:
            if early_post is None or (backend_post is not None and backend_post.stats.views is not None):
                return await self._complete(link, backend_post, tracker)
            return await early_post or backend_post

        sent: Sent | None = None
        post: Post | None = None
        try:
            while sent is None and not (fetch.done() and announced.empty()):
                next_stream = asyncio.ensure_future(announced.get())
                await asyncio.wait({next_stream, fetch}, return_when=asyncio.FIRST_COMPLETED)
                if not next_stream.done():
                    next_stream.cancel()
                    continue
                stream = next_stream.result()
                post = await caption_post(stream.post)
                self.sending()
                try:
                    sent = await sender.send_stream(stream, post)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if stream.error is None:
                        raise  # the upload's own failure (flood control, Telegram's refusal): as send_media's
                    # The download broke off and nothing was posted: the next source's or backend's stream, or
                    # the finished spool, goes out instead.
                    log.info("streamed upload abandoned: %s", exc)
            try:
                media = await fetch
            except ServiceError:
                if sent is None:
                    raise
                log.exception("the download failed after its streamed upload went out")
                tracker.backend = "stream"
            else:
                async with media:
                    tracker.backend = media.backend
                    if sent is None:
                        post = await caption_post(media.post)
                        self.sending()
                        sent = await sender.send_media(media, post, Want.VIDEO)
        finally:
            if early_post is not None and not early_post.done():
                early_post.cancel()
            if not fetch.done():
                fetch.cancel()
            elif not fetch.cancelled() and fetch.exception() is None:
                fetch.result().release()  # idempotent; frees the spool if we stopped before using it
        tracker.bytes_sent = sent.bytes_sent
        await self._remember(platform, post_id, variant_prefix(Want.VIDEO, quality), sent, post)

    async def _complete(self, link: TikTokLink, post: Post | None, tracker: Tracker) -> Post | None:
        """The post's metadata for the caption: from the backend if it has stats, else from metadata."""
        if post is not None and post.stats.views is not None and post.author:
            return post
        if self.metadata is None:
            return post
        try:
            answer = await self.metadata.post(link)
        except ServiceError as exc:
            # The media is here; a caption without stats is better than no reply.
            log.info("no metadata for the caption: %s", exc.code)
            return post
        tracker.units += answer.units
        return answer.value

    def quality_for(self, prefs: ChatPrefs) -> Quality:
        """A chat's rendition choice: its own, or the bot's DOWNLOAD__QUALITY when left on auto."""
        return Quality(prefs.quality) if prefs.quality in tuple(Quality) else self.quality

    async def cached_refs(
        self, platform: str, post_id: str, want: Want, quality: Quality = Quality.COMPATIBLE
    ) -> tuple[dict[str, str], Post | None]:
        """The cached references (variant -> ref) of a post and its cached metadata, if any."""
        prefix = variant_prefix(want, quality)
        refs = await self.store.media.get_many(platform, post_id, prefix)
        if not refs:
            return {}, None
        meta = await self.store.media.get(platform, post_id, POST_VARIANT)
        return {k.removeprefix(prefix): v for k, v in refs.items()}, (_post_from_json(meta) if meta else None)

    async def _send_from_cache(
        self,
        platform: str,
        post_id: str,
        sender: MediaSender,
        want: Want,
        tracker: Tracker,
        quality: Quality = Quality.COMPATIBLE,
    ) -> bool:
        refs, post = await self.cached_refs(platform, post_id, want, quality)
        if not refs:
            return False
        self.sending()
        try:
            sent = await sender.send_cached(post, refs, want)
        except StaleReference:
            log.info("stale cached reference, downloading again")
            await self.store.media.invalidate(platform, post_id)
            return False
        tracker.cache_hit = True
        tracker.backend = "cache"
        tracker.bytes_sent = sent.bytes_sent
        return True

    async def _remember(
        self, platform: str, post_id: str, prefix: str, sent: Sent, post: Post | None
    ) -> None:
        if not sent.refs:
            return
        for variant, ref in sent.refs.items():
            await self.store.media.put(platform, post_id, prefix + variant, ref)
        if post is not None:
            await self.store.media.put(platform, post_id, POST_VARIANT, _post_to_json(post))


def _log_reply_failed(exc: ReplyFailed) -> None:
    """One line, no traceback: the platform, not the bot, refused the reply."""
    log.warning("reply not delivered: %s", exc, extra={"outcome": exc.outcome})
