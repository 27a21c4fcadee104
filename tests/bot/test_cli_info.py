"""`tiktok-bot info post|user|hashtag` against the emulators, through bot.__main__.main like a shell would."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import upstreams
from bot.__main__ import main
from bot.chat.cards import profile_card
from bot.cli import info
from sandbox.catalogue import CATALOGUE, T0, Status, post_id_at
from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from sandbox.runner import Sandbox
from services.links import LinkKind, TikTokLink, find_links
from services.metadata.models import Profile
from services.metadata.service import build_providers

CLIP = post_id_at(T0, 1)
CLIP_URL = CATALOGUE.posts[CLIP].url


class BackgroundSandbox:
    """The emulators on their own event loop in a thread: main() runs asyncio.run in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sandbox = Sandbox([EnsembleDataEmulator(), ResearchEmulator()])

    def __enter__(self) -> Sandbox:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self.loop).result(10)
        return self.sandbox

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Sandbox]:
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr(
        upstreams, "build_providers", functools.partial(build_providers, backoff=0)
    )  # instant retries
    with BackgroundSandbox() as running:
        for key, value in running.env().items():
            monkeypatch.setenv(key, value)
        yield running


@pytest.fixture(autouse=True)
def _post_urls_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the real find_links once it exists; until then, a stand-in that knows canonical post URLs."""
    try:
        find_links(CLIP_URL)
    except NotImplementedError:

        def stand_in(text: str, limit: int = 5) -> list[TikTokLink]:
            found = re.search(r"https://www\.tiktok\.com/@([\w.\-]+)/video/(\d+)", text)
            if found is None:
                return []
            return [
                TikTokLink(LinkKind.POST, found.group(0), post_id=found.group(2), username=found.group(1))
            ]

        monkeypatch.setattr(info, "find_links", stand_in)


def ed(sandbox: Sandbox) -> EnsembleDataEmulator:
    return sandbox.get(EnsembleDataEmulator)


def research(sandbox: Sandbox) -> ResearchEmulator:
    return sandbox.get(ResearchEmulator)


def test_info_post_card(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    # The chat's post card (bot/chat/cards.py) as plain text; date, size, saves and hashtags are in --json.
    assert main(["info", "post", CLIP_URL]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Sandbox Cook (@sandbox.cook)",
        "Pasta in 30 seconds #pasta #cooking <b>&amp;</b>",
        "1.5M views · 240K likes · 1.3K comments · 905 shares",
        "⏱ 0:03 · 🎵 original sound",
        CLIP_URL,
        "via ensembledata · 1 unit · 1 request",
    ]
    assert len(ed(sandbox).hits("/apis/tt/post/info")) == 1


def test_info_cards_are_the_chat_cards(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    # One home for what a card says: the CLI prints the same card the chats show, line for line.
    assert main(["info", "user", "sandbox.cook", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    card = profile_card(Profile(**data), "en")
    assert main(["info", "user", "sandbox.cook"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == info.card_lines(card)
    assert card.title in out and card.footer in out and card.url in out


def test_info_post_by_bare_id(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "post", CLIP]) == 0
    assert "1.5M views" in capsys.readouterr().out


def test_info_post_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "post", CLIP_URL, "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["id"] == CLIP and data["author"] == "sandbox.cook"
    assert data["stats"] == {
        "views": 1_534_000,
        "likes": 240_100,
        "comments": 1_320,
        "shares": 905,
        "saves": 5_012,
    }
    assert data["created"] == "2023-11-14T22:13:20+00:00"
    assert data["hashtags"] == ["pasta", "cooking"]
    assert captured.err.strip() == "via ensembledata · 1 unit · 1 request"


def test_info_post_photo(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    slides = post_id_at(T0 + 2 * 86_400, 3)
    assert main(["info", "post", CATALOGUE.posts[slides].url]) == 0
    assert "🖼 3 photos · 🎵 Hill song" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("status", "words"),
    [(Status.DELETED, "gone"), (Status.PRIVATE, "restricted"), (Status.PRIVATE_ACCOUNT, "private")],
)
def test_info_post_unavailable_is_one_line(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], status: Status, words: str
) -> None:
    post = next(p for p in CATALOGUE.posts.values() if p.status is status)
    assert main(["info", "post", post.url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and words in captured.err
    assert "Traceback" not in captured.err


def test_info_post_not_a_post_url(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "post", "https://example.com/nothing"]) == 1
    err = capsys.readouterr().err
    assert "not a TikTok post URL" in err and len(err.strip().splitlines()) == 1
    assert ed(sandbox).requests == []


def test_info_user_card(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "user", "@sandbox.cook"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Sandbox Cook (@sandbox.cook)",
        "Recipes from the loopback kitchen",
        "1.2M followers · 321 following · 98.7M likes · 42 videos",
        "✔️ verified",
        "https://www.tiktok.com/@sandbox.cook",
        "via ensembledata · 1 unit · 1 request",
    ]


def test_info_user_private_and_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "user", "secret.agent"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Agent (@secret.agent)" and "🔒 private account" in out
    assert main(["info", "user", "travel_bug-1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "username": "travel_bug-1",
        "nickname": "Travel Bug",
        "verified": False,
        "bio": "Photos from everywhere",
        "avatar": data["avatar"],
        "followers": 45_000,
        "following": 100,
        "likes": 2_100_000,
        "videos": 300,
        "private": False,
    }


def test_info_user_unknown(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "user", "nobody.here"]) == 1
    err = capsys.readouterr().err
    assert "no such TikTok user" in err and len(err.strip().splitlines()) == 1
    assert research(sandbox).requests == []  # not found is an answer: no fallback


def test_info_hashtag_pages(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "hashtag", "#food", "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "#food"
    assert out[1] == "1. @sandbox.cook · 👁 1K · ❤️ 100 — Dish number 1 #food"
    assert out[2] == f"    {CATALOGUE.posts[CATALOGUE.hashtags['food'][0]].url}"
    assert out[-3:-1] == ["https://www.tiktok.com/tag/food", "next page: --cursor 3"]
    assert main(["info", "hashtag", "food", "--limit", "3", "--cursor", "24"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line[:1].isdigit()]
    assert rows == ["1. @sandbox.cook · 👁 25K · ❤️ 2.5K — Dish number 25 #food"]
    assert not any(line.startswith(("next page", "page ")) for line in out)  # a cursor's page has no number


def test_info_hashtag_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "hashtag", "travel", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tag"] == "travel" and data["next_cursor"] is None
    assert [p["id"] for p in data["posts"]] == CATALOGUE.hashtags["travel"]


@pytest.mark.parametrize("limit", ["0", "51", "x"])
def test_info_hashtag_limit_is_checked(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["info", "hashtag", "food", "--limit", limit])
    assert exc.value.code == 2
    assert ed(sandbox).requests == []


def test_falls_back_to_research(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    ed(sandbox).fault_next("500", count=4)
    assert main(["info", "user", "sandbox.cook"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "via research · 0 units · 1 request"
    assert "1.2M followers · 321 following · 98.7M likes · 42 videos" in out


def test_research_only(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METADATA__PROVIDERS", "research")
    assert main(["info", "post", CLIP_URL]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "via research · 0 units · 1 request"
    assert main(["info", "user", "secret.agent"]) == 1
    assert "does not share" in capsys.readouterr().err
    assert ed(sandbox).requests == []


def test_ensembledata_units_spent(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    ed(sandbox).units_balance = 0
    research(sandbox).daily_quota = 0
    assert main(["info", "user", "sandbox.cook"]) == 1
    err = capsys.readouterr().err
    assert "quota" in err and len(err.strip().splitlines()) == 1


def test_no_provider_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in list(os.environ):
        if "__" in key:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    assert main(["info", "user", "sandbox.cook"]) == 2
    err = capsys.readouterr().err
    assert "ENSEMBLEDATA__TOKEN" in err and len(err.strip().splitlines()) == 1


def test_help_lists_info(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = capsys.readouterr().out
    assert "post" in out and "user" in out and "hashtag" in out
