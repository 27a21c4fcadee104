"""Catalogues and error texts: every language has every key; every error kind has its own reply."""

from __future__ import annotations

import pytest

from bot.chat.errors import error_text, human_size
from bot.chat.i18n import catalogues, pick_language, t
from services.errors import (
    CdnRejected,
    ChallengeFailed,
    EmptyShell,
    InvalidLink,
    IpBlocked,
    LinkNotFound,
    LocalReason,
    LocalResourceError,
    LoginWall,
    NotConfigured,
    PostUnavailable,
    QuotaExceeded,
    RateLimited,
    ShuttingDown,
    StoreError,
    TooLarge,
    TruncatedStream,
    UnavailableReason,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UserNotFound,
)


def test_every_language_has_every_key_and_placeholders() -> None:
    cats = catalogues()
    assert {"en", "ru"} <= set(cats)
    english = cats["en"]
    for lang, cat in cats.items():
        assert set(cat) == set(english), lang
        for key, text in english.items():
            assert _fields(cat[key]) == _fields(text), (lang, key)


def _fields(text: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize(
    ("code", "preferred", "expected"),
    [
        ("ru", None, "ru"),
        ("ru-RU", None, "ru"),
        ("en-US", None, "en"),
        ("de", None, "en"),
        (None, None, "en"),
        ("en", "ru", "ru"),
        ("ru", "auto", "ru"),
        ("ru", "xx", "ru"),
    ],
)
def test_pick_language(code: str | None, preferred: str | None, expected: str) -> None:
    assert pick_language(code, preferred) == expected


ERRORS = [
    RateLimited(12.2),
    *(PostUnavailable(r) for r in UnavailableReason),
    TooLarge(size=64_000_000, limit=50_000_000),
    UserNotFound(),
    InvalidLink(),
    LinkNotFound(),
    UnsafeRedirect(),
    QuotaExceeded(),
    NotConfigured(),
    ShuttingDown(),
    UpstreamError(),
    UpstreamTimeout(),
    UpstreamServerError(),
    ChallengeFailed(),
    EmptyShell(),
    IpBlocked(),
    LoginWall(),
    CdnRejected(),
    RuntimeError("boom"),
    # the causes that are not TikTok's, each with its own text
    UpstreamError(upstream="research", status=500),
    UpstreamTimeout(upstream="ensembledata"),
    QuotaExceeded(upstream="ensembledata"),
    UpstreamError(upstream="ttsave", status=500),
    UpstreamTimeout(upstream="ttsave"),
    UpstreamRejected(upstream="ttsave", status=400),
    TruncatedStream(upstream="web"),
    UpstreamRejected(upstream="web", status=404),
    LocalResourceError(LocalReason.DISK_FULL),
    StoreError(),
]
# Failures of the stats providers and of the download service: whoever failed, it was not TikTok.
NOT_TIKTOK = [
    UpstreamError(upstream="research", status=500),
    UpstreamServerError(upstream="research", status=503),
    UpstreamTimeout(upstream="research"),
    UpstreamError(upstream="ensembledata", status=502),
    UpstreamRejected(upstream="ensembledata", status=401),
    UpstreamTimeout(upstream="ensembledata"),
    QuotaExceeded(upstream="ensembledata"),
    QuotaExceeded(upstream="research"),
    UpstreamError(upstream="ttsave", status=500),
    UpstreamServerError(upstream="ttsave", status=502),
    UpstreamTimeout(upstream="ttsave"),
    UpstreamRejected(upstream="ttsave", status=422),
    LocalResourceError(LocalReason.TOO_MANY_FILES),
    StoreError(),
]


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_each_error_kind_has_a_distinct_text(lang: str) -> None:
    texts = [error_text(exc, lang) for exc in ERRORS]
    assert len(set(texts)) == len(texts)
    assert all(text and "{" not in text for text in texts)
    assert "13" in error_text(RateLimited(12.2), lang)
    assert "64.0 MB" in error_text(TooLarge(size=64 * 2**20, limit=50 * 2**20), lang)
    # A 10204 block is never worded as a deleted post.
    assert error_text(IpBlocked(), lang) != error_text(PostUnavailable(UnavailableReason.DELETED), lang)


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("exc", NOT_TIKTOK, ids=lambda e: f"{type(e).__name__}-{e.upstream}")
def test_failures_that_are_not_tiktoks_never_blame_tiktok(exc: Exception, lang: str) -> None:
    text = error_text(exc, lang)
    assert "TikTok" not in text
    assert text != error_text(UpstreamError(upstream="web"), lang)
    assert text != error_text(RuntimeError("boom"), lang)


def test_russian_differs_from_english() -> None:
    assert t("ru", "error.unavailable:private") != t("en", "error.unavailable:private")
    assert "boom" not in error_text(RuntimeError("boom"), "en")


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(50 * 2**20) == "50.0 MB"
    assert human_size(48 * 2**20) == "48.0 MB"
    assert human_size(2000 * 2**20) == "2.0 GB"
