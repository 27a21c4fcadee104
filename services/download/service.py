"""The download service: a chain of backends, single-flight per post, bounded concurrency, shared temp files.

`DownloadService.fetch(link, want, size_limit)` tries the backends in order. It moves on after an
UpstreamError (and after TooLarge: the next backend may pick a smaller rendition), never after PostUnavailable
or another verdict about the post. Each backend has a circuit breaker (`services.health`): one whose
breaker is open is skipped at once, and the skip is in the attempt list as `circuit_open`.

Concurrent fetches of the same (post, want, size limit) share one download; its temporary files are deleted
when the last `Media` holding them is closed, or at once when the download fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import httpx

from services.download.growing import Announce, GrowingFile, listen, unlisten
from services.download.models import (
    Backend,
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Quality,
    Want,
)
from services.download.probe import probe_mp4
from services.download.sessions import SessionPool
from services.download.spool import local_errors
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.download.ytdlp import YtDlpBackend, yt_dlp_available
from services.errors import (
    InvalidLink,
    LocalResourceError,
    NotConfigured,
    ServiceError,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
    error_code,
)
from services.health import (
    SKIPPED,
    BackendFigures,
    BackendHealth,
    CircuitBreaker,
    Clock,
)
from services.links import LinkKind, TikTokLink
from services.metadata.models import Post
from services.retry import RetryPolicy

log = logging.getLogger("services.download")

BACKEND_NAMES = ("ttsave", "web", "ytdlp")
Resolver = Callable[[TikTokLink], Awaitable[TikTokLink]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One backend's try at a download: how long it took and the error code it ended with (None: served)."""

    backend: str
    seconds: float
    error_code: str | None = None


class AttemptObserver(Protocol):
    """Told of every attempt as it ends (metrics; the service does not know who listens)."""

    def attempted(self, attempt: Attempt) -> None:
        """One backend's try ended."""
        ...


@dataclass(frozen=True, slots=True)
class _Result:
    download: Download
    backend: str
    attempts: tuple[Attempt, ...]
    temp_dir: Path


class Media:
    """A finished download: its files stay on disk until this is closed (`async with` or `aclose()`)."""

    def __init__(self, result: _Result, release: Callable[[], None]) -> None:
        self.kind: MediaKind = result.download.kind
        self.files: tuple[MediaFile, ...] = result.download.files
        self.post: Post | None = result.download.post
        self.backend: str = result.backend
        self.attempts: list[Attempt] = list(result.attempts)
        self._release: Callable[[], None] | None = release

    @property
    def closed(self) -> bool:
        """Whether this holder has let go of the files."""
        return self._release is None

    @property
    def size(self) -> int:
        """Bytes over all files."""
        return sum(f.size for f in self.files)

    def release(self) -> None:
        """Let go of the files; the last holder to do so deletes them. Idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release()

    async def aclose(self) -> None:
        """Let go of the files (as `release`)."""
        self.release()

    async def __aenter__(self) -> Media:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Media {self.kind.value} from {self.backend}: {len(self.files)} file(s), {self.size} bytes>"


class _Flight:
    """One download in progress or done, and how many callers hold (or await) its result."""

    __slots__ = ("cleaned", "key", "refs", "task")

    def __init__(self, key: tuple[str, Want, int | None, Quality]) -> None:
        self.key = key
        self.refs = 0
        self.cleaned = False
        self.task: asyncio.Task[_Result] | None = None


class DownloadService:
    """Downloads a post's media through a chain of backends."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        max_concurrent: int = 4,
        temp_root: Path | None = None,
        attempt_timeout: float | None = None,
        resolver: Resolver | None = None,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
        probe_timeout: float = 10.0,
        clock: Clock = time.monotonic,
        observer: AttemptObserver | None = None,
    ) -> None:
        self._backends = list(backends)
        self.observer = observer
        self._health = {
            b.name: BackendHealth(
                b.name,
                CircuitBreaker(
                    failures=breaker_failures,
                    cooldown=breaker_cooldown,
                    clock=clock,
                    has_probe=callable(getattr(b, "probe", None)),
                ),
            )
            for b in self._backends
        }
        self._probe_timeout = probe_timeout
        self._probes: set[asyncio.Task[None]] = set()
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._temp_root = temp_root
        self._attempt_timeout = attempt_timeout
        self._resolver = resolver
        self._flights: dict[tuple[str, Want, int | None, Quality], _Flight] = {}
        self._running: set[asyncio.Task[_Result]] = set()

    @property
    def first_reads_post(self) -> bool:
        """Whether the first backend reads the post's stats itself (the web page does; TTSave does not)."""
        return bool(self._backends) and bool(getattr(self._backends[0], "reads_post", False))

    @property
    def backend_names(self) -> list[str]:
        """The backends, in the order tried."""
        return [b.name for b in self._backends]

    def health(self, name: str) -> BackendHealth:
        """A backend's breaker and counters."""
        return self._health[name]

    def figures(self) -> list[BackendFigures]:
        """Each backend's figures since start-up and its breaker now, in chain order."""
        served = sum(h.successes for h in self._health.values())
        return [self._health[b.name].figures(served) for b in self._backends]

    def start_probes(self) -> None:
        """At start-up: probe every backend that has a health check (TTSave's /ping) in the background, so a
        dead one is open before the first user pays for it; requests meanwhile go through as usual."""
        for backend in self._backends:
            if self._health[backend.name].breaker.has_probe:
                self._launch_probe(backend)

    async def wait_probes(self) -> None:
        """Wait for the probes under way (tests and `doctor` use it)."""
        while self._probes:
            await asyncio.gather(*list(self._probes), return_exceptions=True)

    def _launch_probe(self, backend: Backend) -> None:
        task = asyncio.create_task(self._probe(backend), name=f"probe-{backend.name}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self, backend: Backend) -> None:
        probe = getattr(backend, "probe", None)
        assert probe is not None
        breaker = self._health[backend.name].breaker
        try:
            async with asyncio.timeout(self._probe_timeout):
                ok = bool(await probe())
        except TimeoutError:
            ok = False
        except Exception:
            log.exception("probe of %s crashed", backend.name)
            ok = False
        before = breaker.state
        breaker.probe_result(ok)
        log.info(
            "probe of %s: %s, breaker %s -> %s",
            backend.name,
            "ok" if ok else "failed",
            before.value,
            breaker.state.value,
            extra={"action": "probe", "backend": backend.name, "outcome": "ok" if ok else "failed"},
        )

    async def fetch(
        self,
        link: TikTokLink,
        want: Want = Want.VIDEO,
        size_limit: int | None = None,
        *,
        progress: Progress | None = None,
        quality: Quality = Quality.COMPATIBLE,
        on_stream: Announce | None = None,
    ) -> Media:
        """Download a post's media (`Want`, `Quality`), no file over `size_limit` bytes; close it later.

        `on_stream` is handed each video a backend can describe before its bytes arrive, as a GrowingFile an
        upload may read while the download goes on (see services.download.growing).
        """
        if not self._backends:
            raise NotConfigured("no download backend is configured")
        if link.kind is LinkKind.SHORT and self._resolver is not None:
            link = await self._resolver(link)
        if not link.has_media:
            raise InvalidLink(f"a {link.kind.value} link has no media to download")
        key = (link.post_id or link.url, want, size_limit, quality)
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(key)
            # Only the caller that starts a download sees its progress and streams; the others wait for it.
            flight.task = asyncio.create_task(
                self._download(link, want, size_limit, progress, quality, on_stream)
            )
            self._flights[key] = flight
            self._running.add(flight.task)
            flight.task.add_done_callback(partial(self._landed, flight))
        flight.refs += 1
        assert flight.task is not None
        try:
            # Shielded: one caller giving up must not cancel the download the others wait for.
            result = await asyncio.shield(flight.task)
        except BaseException:
            self._release(flight)
            raise
        return Media(result, partial(self._release, flight))

    async def aclose(self) -> None:
        """Cancel downloads in progress and close the backends."""
        for task in [*self._running, *self._probes]:
            task.cancel()
        for task in [*self._running, *self._probes]:
            with contextlib.suppress(BaseException):
                await task
        for backend in self._backends:
            await backend.aclose()

    # --- single-flight bookkeeping ---

    def _landed(self, flight: _Flight, task: asyncio.Task[_Result]) -> None:
        self._running.discard(task)
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if not task.cancelled() and task.exception() is None and flight.refs == 0:
            self._clean(flight)  # everyone waiting gave up before it finished

    def _release(self, flight: _Flight) -> None:
        flight.refs -= 1
        if flight.refs == 0 and flight.task is not None and flight.task.done():
            self._clean(flight)

    def _clean(self, flight: _Flight) -> None:
        task = flight.task
        if flight.cleaned or task is None or task.cancelled() or task.exception() is not None:
            return
        flight.cleaned = True
        shutil.rmtree(task.result().temp_dir, ignore_errors=True)

    # --- the chain ---

    async def _download(
        self,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        progress: Progress | None,
        quality: Quality,
        on_stream: Announce | None = None,
    ) -> _Result:
        async with self._semaphore:
            attempts: list[Attempt] = []
            failures: list[BaseException] = []
            for backend in self._backends:
                health = self._health[backend.name]
                if health.breaker.probe_due():
                    self._launch_probe(backend)
                if not health.breaker.allow():
                    health.skipped += 1
                    attempts.append(Attempt(backend.name, 0.0, SKIPPED))
                    self._log_attempt(link, attempts[-1], None)
                    continue
                try:
                    temp_dir = self._make_temp_dir(backend.name)
                except LocalResourceError as exc:
                    _log_local(exc)
                    raise
                started = time.monotonic()
                streams: list[GrowingFile] = []
                token = listen(_relay(streams, on_stream) if on_stream is not None else None)
                try:
                    download = await self._attempt(
                        backend, link, want, size_limit, temp_dir, progress, quality
                    )
                    with local_errors(f"reading {backend.name}'s files"):
                        download = with_video_info(download)
                except BaseException as exc:
                    for stream in streams:
                        stream.fail(exc)  # an upload reading it must not complete
                    shutil.rmtree(temp_dir, ignore_errors=True)
                    if not isinstance(exc, Exception):
                        raise  # cancellation
                    attempts.append(Attempt(backend.name, time.monotonic() - started, error_code(exc)))
                    # This machine's trouble (a full disk) says nothing of the upstream's health.
                    if not isinstance(exc, LocalResourceError) and health.observe(attempts[-1].seconds, exc):
                        self._launch_probe(backend)
                    self._log_attempt(link, attempts[-1], exc)
                    if isinstance(exc, LocalResourceError):
                        _log_local(exc)
                        _note_attempts(exc, attempts)
                        raise  # this machine's trouble: every other backend would hit it too
                    if isinstance(exc, ServiceError) and not isinstance(exc, UpstreamError | TooLarge):
                        _note_attempts(exc, attempts)
                        raise  # a verdict about the post: another backend would say the same
                    failures.append(exc)
                    continue
                finally:
                    unlisten(token)
                for stream in streams:
                    stream.finish()
                attempts.append(Attempt(backend.name, time.monotonic() - started))
                health.observe(attempts[-1].seconds, None)
                self._log_attempt(link, attempts[-1], None)
                return _Result(download, backend.name, tuple(attempts), temp_dir)
            error = _final_error(failures)
            _note_attempts(error, attempts)
            raise error

    def _make_temp_dir(self, backend: str) -> Path:
        """A fresh directory for one attempt's files, under the configured root."""
        with local_errors("creating a spool directory"):
            if self._temp_root is not None:
                self._temp_root.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f"tiktok-bot-{backend}-", dir=self._temp_root))

    async def _attempt(
        self,
        backend: Backend,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None,
        quality: Quality,
    ) -> Download:
        try:
            async with asyncio.timeout(self._attempt_timeout):
                download = await backend.fetch(link, want, size_limit, temp_dir, progress, quality=quality)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{backend.name} took over {self._attempt_timeout:g}s", upstream=backend.name
            ) from None
        for file in download.files:
            if file.path.parent != temp_dir or not file.path.is_file():
                raise UpstreamError(f"{backend.name} reported a file it did not write", upstream=backend.name)
            if size_limit is not None and file.size > size_limit:
                raise TooLarge(size=file.size, limit=size_limit)
        if not download.files:
            raise UpstreamError(f"{backend.name} produced no files", upstream=backend.name)
        return download

    def _log_attempt(self, link: TikTokLink, attempt: Attempt, exc: BaseException | None) -> None:
        if self.observer is not None:
            try:
                self.observer.attempted(attempt)
            except Exception:
                log.exception("attempt observer failed")
        fields = {
            "action": "download",
            "backend": attempt.backend,
            "post_id": link.post_id,
            "seconds": round(attempt.seconds, 3),
            "outcome": attempt.error_code or "ok",
        }
        if exc is not None and not isinstance(exc, ServiceError):
            log.error("download backend %s crashed", attempt.backend, exc_info=exc, extra=fields)
        else:
            log.info("download attempt %s: %s", attempt.backend, fields["outcome"], extra=fields)


def _relay(streams: list[GrowingFile], on_stream: Announce) -> Announce:
    """An announcement listener that remembers what it passed on, for the attempt's verdict."""

    def relay(stream: GrowingFile) -> None:
        streams.append(stream)
        on_stream(stream)

    return relay


def _log_local(exc: LocalResourceError) -> None:
    """The operator's line for a local shortage: what ran out, where, and that the bot carries on."""
    log.error(
        "local resource problem (%s): %s; the request was refused, the bot keeps serving",
        exc.reason.value,
        exc.message,
        extra={"action": "download", "outcome": exc.detail_code, "path": exc.path},
    )


def with_video_info(download: Download) -> Download:
    """The download with each video's width, height and duration filled in from its file where missing."""
    files = []
    for file in download.files:
        if file.role is FileRole.VIDEO and not (file.width and file.height and file.duration):
            info = probe_mp4(file.path)
            file = dataclasses.replace(
                file,
                width=file.width or info.width,
                height=file.height or info.height,
                duration=file.duration or info.duration,
            )
        files.append(file)
    return dataclasses.replace(download, files=tuple(files))


def _final_error(failures: Sequence[BaseException]) -> BaseException:
    """What to raise when every backend failed: TooLarge if any backend found the media too big, else the last
    error; when every backend was skipped, an UpstreamError saying so."""
    if not failures:
        return UpstreamError("every download backend is out of service for now (circuit open)")
    too_large = [f for f in failures if isinstance(f, TooLarge)]
    if too_large:
        # A stream cut off at the limit knows a lower bound only; Content-Length, read by another, knows more.
        return max(too_large, key=lambda f: f.size or 0)
    service_errors = [f for f in failures if isinstance(f, ServiceError)]
    return service_errors[-1] if service_errors else failures[-1]


def _note_attempts(exc: BaseException, attempts: Sequence[Attempt]) -> None:
    exc.add_note(
        "attempts: " + "; ".join(f"{a.backend} {a.seconds:.2f}s {a.error_code or 'ok'}" for a in attempts)
    )


def build_backends(
    names: Sequence[str],
    *,
    tiktok_client: httpx.AsyncClient,
    ttsave_client: httpx.AsyncClient,
    ttsave_url: str,
    retry: RetryPolicy | None = None,
    door_attempts: int = 3,
    sessions: SessionPool | None = None,
) -> list[Backend]:
    """The backends named (`ttsave`, `web`, `ytdlp`), in that order, on the given shared clients (the web
    backend on `sessions`, warm visitor sessions, when given; else on a direct pool over `tiktok_client`)."""
    backends: list[Backend] = []
    for name in names:
        if name == "ttsave":
            backends.append(TTSaveBackend(ttsave_client, ttsave_url, retry=retry))
        elif name == "web":
            backends.append(
                WebBackend(tiktok_client, retry=retry, sessions=sessions, door_attempts=door_attempts)
            )
        elif name == "ytdlp":
            if not yt_dlp_available():
                raise NotConfigured("the ytdlp backend needs yt-dlp: pip install 'tiktok-bot[ytdlp]'")
            backends.append(YtDlpBackend(tiktok_client, retry=retry, sessions=sessions))
        else:
            raise NotConfigured(f"unknown download backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    return backends
