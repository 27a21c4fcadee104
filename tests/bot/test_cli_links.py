"""`tiktok-bot links` and `tiktok-bot resolve`: JSON lines on stdout, one line on stderr on failure."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.__main__ import main
from tests.scripted_host import Answer, ScriptedHost, redirect, serve_in_thread

KEYS = ["kind", "url", "post_id", "username", "tag", "code", "user_id"]
POST_ID = "7240568259186019630"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_links_prints_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        f"look https://www.tiktok.com/@chillezy/photo/{POST_ID}?lang=en, https://vm.tiktok.com/ZMabc/! "
        "and tiktok.com/@meme plus https://tiktok.com/tag/fyp and https://www.tiktok.com/music/song-42"
    )
    code, rows, err = run(capsys, "links", text)
    assert code == 0 and err == ""
    assert all(list(row) == KEYS for row in rows)
    assert rows == [
        {
            "kind": "post",
            "url": f"https://www.tiktok.com/@chillezy/video/{POST_ID}",
            "post_id": POST_ID,
            "username": "chillezy",
            "tag": None,
            "code": None,
            "user_id": None,
        },
        {
            "kind": "short",
            "url": "https://vm.tiktok.com/ZMabc/",
            "post_id": None,
            "username": None,
            "tag": None,
            "code": "ZMabc",
            "user_id": None,
        },
        {
            "kind": "user",
            "url": "https://www.tiktok.com/@meme",
            "post_id": None,
            "username": "meme",
            "tag": None,
            "code": None,
            "user_id": None,
        },
        {
            "kind": "hashtag",
            "url": "https://www.tiktok.com/tag/fyp",
            "post_id": None,
            "username": None,
            "tag": "fyp",
            "code": None,
            "user_id": None,
        },
        {
            "kind": "music",
            "url": "https://www.tiktok.com/music/song-42",
            "post_id": None,
            "username": None,
            "tag": None,
            "code": None,
            "user_id": None,
        },
    ]


def test_links_honours_the_per_message_limit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMITS__LINKS_PER_MESSAGE", "2")
    text = " ".join(f"https://www.tiktok.com/@u/video/{i}" for i in range(1, 6))
    code, rows, _ = run(capsys, "links", text)
    assert code == 0 and [row["post_id"] for row in rows] == ["1", "2"]


def test_links_prints_nothing_for_no_links(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "links", "faketiktok.com/@a/video/1 https://www.tiktok.com/about") == (0, [], "")


@pytest.fixture
def tiktok(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedHost]:
    with serve_in_thread(ScriptedHost()) as host:
        monkeypatch.setenv("UPSTREAM_ROUTES", json.dumps({"*.tiktok.com": host.base_url}))
        yield host


def test_resolve_prints_the_post(capsys: pytest.CaptureFixture[str], tiktok: ScriptedHost) -> None:
    tiktok.script(
        "vm.tiktok.com", "/ZMclip01/", redirect(f"https://www.tiktok.com/@chillezy/video/{POST_ID}?_r=1")
    )
    code, rows, err = run(capsys, "resolve", "https://vm.tiktok.com/ZMclip01/")
    assert (code, err) == (0, "")
    assert rows == [
        {
            "kind": "post",
            "url": f"https://www.tiktok.com/@chillezy/video/{POST_ID}",
            "post_id": POST_ID,
            "username": "chillezy",
            "tag": None,
            "code": None,
            "user_id": None,
        }
    ]
    assert [(r.host, r.path) for r in tiktok.requests] == [("vm.tiktok.com", "/ZMclip01/")]
    assert tiktok.requests[0].method == "GET"


@pytest.mark.parametrize(
    ("answer", "code_word"),
    [
        (redirect("https://www.tiktok.com/?_r=1"), "link_not_found"),
        (redirect("https://evil.example/"), "unsafe_redirect"),
        (Answer(503), "upstream_error"),
    ],
)
def test_resolve_failure_is_one_line(
    capsys: pytest.CaptureFixture[str], tiktok: ScriptedHost, answer: Answer, code_word: str
) -> None:
    tiktok.script("vm.tiktok.com", "/ZMdead000/", answer)
    code, rows, err = run(capsys, "resolve", "https://vm.tiktok.com/ZMdead000/")
    assert code == 1 and rows == []
    assert err.count("\n") == 1 and err.startswith(f"tiktok-bot: {code_word}: ")


def test_resolve_refuses_text_without_a_link(capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = run(capsys, "resolve", "https://faketiktok.com/ZMabc")
    assert code == 1 and rows == []
    assert err == "tiktok-bot: not a TikTok link: https://faketiktok.com/ZMabc\n"


def test_resolve_passes_other_links_through_offline(capsys: pytest.CaptureFixture[str]) -> None:
    # No routes and no network: a post link must not be fetched at all.
    code, rows, err = run(capsys, "resolve", f"https://m.tiktok.com/v/{POST_ID}.html")
    assert (code, err) == (0, "")
    assert rows == [
        {
            "kind": "post",
            "url": f"https://www.tiktok.com/@_/video/{POST_ID}",
            "post_id": POST_ID,
            "username": None,
            "tag": None,
            "code": None,
            "user_id": None,
        }
    ]
