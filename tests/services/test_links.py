"""find_links: the URL forms public tools accept, look-alikes, chat punctuation, and bad input."""

from __future__ import annotations

import os
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.http import is_allowed_url
from services.links import LinkKind, TikTokLink, canonical_post_url, find_links, parse_link


def post(post_id: str, username: str | None = None) -> TikTokLink:
    return TikTokLink(
        LinkKind.POST, canonical_post_url(post_id, username), post_id=post_id, username=username
    )


def short(code: str, host: str = "vm") -> TikTokLink:
    url = f"https://www.tiktok.com/t/{code}/" if host == "t" else f"https://{host}.tiktok.com/{code}/"
    return TikTokLink(LinkKind.SHORT, url, code=code)


def user(name: str) -> TikTokLink:
    return TikTokLink(LinkKind.USER, f"https://www.tiktok.com/@{name}", username=name)


def tag(name: str, encoded: str | None = None) -> TikTokLink:
    return TikTokLink(LinkKind.HASHTAG, f"https://www.tiktok.com/tag/{encoded or name}", tag=name)


def user_by_id(user_id: str) -> TikTokLink:
    return TikTokLink(LinkKind.USER, f"https://www.tiktok.com/share/user/{user_id}", user_id=user_id)


def music(slug_and_id: str) -> TikTokLink:
    return TikTokLink(LinkKind.MUSIC, f"https://www.tiktok.com/music/{slug_and_id}")


HANK = "7047596209028074758"
SCOUT = "6718335390845095173"  # the post in TikTok's own embed and oEmbed documentation

# (text, the one link it holds). Sources: yt-dlp `yt_dlp/extractor/tiktok.py` _TESTS (current and history),
# gallery-dl `test/results/tiktok.py`, cobalt `api/src/util/tests/tiktok.json` and `service-config.js`
# patterns, ../shared/reference/tiktok-web.md sections 4-5, and the chat shapes of issue 3.
FORMS: list[tuple[str, TikTokLink]] = [
    # yt-dlp TikTokIE
    (
        "https://www.tiktok.com/@leenabhushan/video/6748451240264420610",
        post("6748451240264420610", "leenabhushan"),
    ),
    (
        "https://www.tiktok.com/@leenabhushan/video/6748451240264420610?enter_from=h5_m",
        post("6748451240264420610", "leenabhushan"),
    ),
    (
        "https://www.tiktok.com/@patroxofficial/video/6742501081818877190?langCountry=en",
        post("6742501081818877190", "patroxofficial"),
    ),
    (
        "https://www.tiktok.com/@cchelseameow/video/6751181801206729990",
        post("6751181801206729990", "cchelseameow"),
    ),
    (
        "https://www.tiktok.com/@MS4wLjABAAAAAR29F6J2Ktu0Daw03BJyXPNoRQ-W7U5a0Mn3lVCq2rQhjOd_WNLclHUoFgwX8Eno"
        "/video/6932675057474981122",
        post(
            "6932675057474981122",
            "MS4wLjABAAAAAR29F6J2Ktu0Daw03BJyXPNoRQ-W7U5a0Mn3lVCq2rQhjOd_WNLclHUoFgwX8Eno",
        ),
    ),
    (
        "https://www.tiktok.com/@MS4wLjABAAAATh8Vewkn0LYM7Fo03iec3qKdeCUOcBIouRk1mkiag6h3o_pQu_dUXvZ2EZlGST7_"
        "/video/7042692929109986561",
        post(
            "7042692929109986561",
            "MS4wLjABAAAATh8Vewkn0LYM7Fo03iec3qKdeCUOcBIouRk1mkiag6h3o_pQu_dUXvZ2EZlGST7_",
        ),
    ),
    (
        "https://www.tiktok.com/@_le_cannibale_/video/7139980461132074283",
        post("7139980461132074283", "_le_cannibale_"),
    ),
    (
        "https://www.tiktok.com/@barudakhb_/video/6984138651336838402",
        post("6984138651336838402", "barudakhb_"),
    ),
    ("https://www.tiktok.com/@denidil6/video/7065799023130643713", post("7065799023130643713", "denidil6")),
    (f"https://www.tiktok.com/@hankgreen1/video/{HANK}", post(HANK, "hankgreen1")),
    (
        "https://www.tiktok.com/@hara_yoimiya/video/7253412088251534594",
        post("7253412088251534594", "hara_yoimiya"),
    ),
    ("https://www.tiktok.com/@moxypatch/video/7206382937372134662", post("7206382937372134662", "moxypatch")),
    (
        "https://www.tiktok.com/@pokemonlife22/video/7059698374567611694",
        post("7059698374567611694", "pokemonlife22"),
    ),
    ("https://www.tiktok.com/@tatemcrae/video/7107337212743830830", post("7107337212743830830", "tatemcrae")),
    ("https://www.tiktok.com/@/video/7668090902816017671/", post("7668090902816017671")),
    (
        "https://www.tiktok.com/@_/video/7668090902816017671",
        post("7668090902816017671"),
    ),  # our canonical form
    ("https://www.tiktok.com/share/video/7668090902816017671/", post("7668090902816017671")),
    ("https://www.tiktokv.com/share/video/7668090902816017671/", post("7668090902816017671")),
    ("https://www.tiktok.com/share/video/6606727368545406213", post("6606727368545406213")),
    ("https://m.tiktok.com/v/6606727368545406213.html", post("6606727368545406213")),
    ("https://m.tiktok.com/v/6749869095467945218.html", post("6749869095467945218")),
    ("https://www.tiktok.com/embed/6567659045795758085", post("6567659045795758085")),
    ("https://www.tiktok.com/trending?shareId=6744531482393545985", post("6744531482393545985")),
    # yt-dlp TikTokVMIE, TikTokUserIE, TikTokTagIE, TikTokSoundIE
    ("https://vm.tiktok.com/ZSe4FqkKd", short("ZSe4FqkKd")),
    ("https://vt.tiktok.com/ZSe4FqkKd", short("ZSe4FqkKd", "vt")),
    ("https://vm.tiktok.com/ZTR45GpSF/", short("ZTR45GpSF")),
    ("https://www.tiktok.com/t/ZTRC5xgJp", short("ZTRC5xgJp", "t")),
    ("https://tiktok.com/@corgibobaa?lang=en", user("corgibobaa")),
    ("https://www.tiktok.com/@corgibobaa?lang=en", user("corgibobaa")),
    ("https://www.tiktok.com/@6820838815978423302", user("6820838815978423302")),
    ("https://www.tiktok.com/@meme", user("meme")),
    ("https://tiktok.com/tag/fypシ?is_copy_url=0&is_from_webapp=v1", tag("fypシ", "fyp%E3%82%B7")),
    ("https://tiktok.com/tag/hello2018", tag("hello2018")),
    (
        "https://www.tiktok.com/music/Build-a-Btch-6956990112127585029?lang=en",
        music("Build-a-Btch-6956990112127585029"),
    ),
    (
        "https://www.tiktok.com/music/jiefei-soap-remix-7036843036118469381",
        music("jiefei-soap-remix-7036843036118469381"),
    ),
    # gallery-dl
    ("https://www.tiktok.com/@chillezy/photo/7240568259186019630", post("7240568259186019630", "chillezy")),
    ("https://www.tiktok.com/@chillezy/video/7240568259186019630", post("7240568259186019630", "chillezy")),
    ("https://vm.tiktok.com/ZGdh4WUhr/", short("ZGdh4WUhr")),
    ("https://www.tiktokv.com/share/video/7240568259186019630", post("7240568259186019630")),
    ("https://www.tiktok.com/@d4vinefem/photo/7449575367024626974", post("7449575367024626974", "d4vinefem")),
    ("https://www.tiktok.com/@d4vinefem/video/7449575367024626974", post("7449575367024626974", "d4vinefem")),
    ("https://vm.tiktok.com/ZGdhVtER2/", short("ZGdhVtER2")),
    ("https://www.tiktokv.com/share/video/7449575367024626974", post("7449575367024626974")),
    (
        "https://www.tiktok.com/@.mcfc.central/photo/7449701420934122785",
        post("7449701420934122785", ".mcfc.central"),
    ),
    (
        "https://www.tiktok.com/@.mcfc.central/video/7449701420934122785",
        post("7449701420934122785", ".mcfc.central"),
    ),
    ("https://vm.tiktok.com/ZGdhVW3cu/", short("ZGdhVW3cu")),
    ("https://www.tiktokv.com/share/video/7449701420934122785", post("7449701420934122785")),
    ("https://www.tiktok.com/@ughuwhguweghw/video/1", post("1", "ughuwhguweghw")),
    ("https://www.tiktok.com/@memezar/video/7449708266168274208", post("7449708266168274208", "memezar")),
    ("https://www.tiktok.com/@memezar/photo/7449708266168274208", post("7449708266168274208", "memezar")),
    ("https://vm.tiktok.com/ZGdht7cjp/", short("ZGdht7cjp")),
    ("https://www.tiktokv.com/share/video/7449708266168274208", post("7449708266168274208")),
    ("https://www.tiktok.com/@chillezy", user("chillezy")),
    ("https://www.tiktok.com/@chillezy/", user("chillezy")),
    ("https://vt.tiktok.com/ZGdhVtER2", short("ZGdhVtER2", "vt")),
    ("https://www.tiktok.com/t/ZGdhVtER2//", short("ZGdhVtER2", "t")),
    # cobalt
    (
        "https://www.tiktok.com/@fatfatmillycat/video/7195741644585454894",
        post("7195741644585454894", "fatfatmillycat"),
    ),
    (
        "https://www.tiktok.com/@matryoshk4/video/7231234675476532526",
        post("7231234675476532526", "matryoshk4"),
    ),
    ("https://www.tiktok.com/@blablabla/video/7120851458451417478", post("7120851458451417478", "blablabla")),
    ("https://vt.tiktok.com/2p4ewa7/", short("2p4ewa7", "vt")),
    (
        "https://www.tiktok.com/@.kyle.films/video/7415757181145877793",
        post("7415757181145877793", ".kyle.films"),
    ),
    ("https://www.tiktok.com/i18n/share/video/7240568259186019630", post("7240568259186019630")),
    # TikTok's embed documentation
    (f"https://www.tiktok.com/@scout2015/video/{SCOUT}", post(SCOUT, "scout2015")),
    (f"https://www.tiktok.com/embed/v2/{SCOUT}", post(SCOUT)),
    (f"https://www.tiktok.com/player/v1/{SCOUT}", post(SCOUT)),
    (f"https://www.tiktok.com/embed/v2/{SCOUT}?lang=en-US", post(SCOUT)),
    (f'<script src="//www.tiktok.com/embed/v2/{SCOUT}"></script>', post(SCOUT)),
    # hosts and schemes (issue 3 item 5)
    (f"m.tiktok.com/@hankgreen1/video/{HANK}", post(HANK, "hankgreen1")),
    (f"tiktok.com/@hankgreen1/video/{HANK}", post(HANK, "hankgreen1")),
    (f"www.tiktok.com/@hankgreen1/video/{HANK}", post(HANK, "hankgreen1")),
    (f"http://www.tiktok.com/@hankgreen1/video/{HANK}", post(HANK, "hankgreen1")),
    (f"HTTPS://WWW.TIKTOK.COM/@hankgreen1/VIDEO/{HANK}", post(HANK, "hankgreen1")),
    ("vm.tiktok.com/ZSe4FqkKd/", short("ZSe4FqkKd")),
    ("HTTPS://VT.TIKTOK.COM/ZSe4FqkKd/", short("ZSe4FqkKd", "vt")),
    ("m.tiktok.com/t/ZTRC5xgJp/", short("ZTRC5xgJp", "t")),
    (
        "https://m.tiktok.com/@_le_cannibale_/photo/7139980461132074283",
        post("7139980461132074283", "_le_cannibale_"),
    ),
    ("https://m.tiktok.com/v/6749869095467945218", post("6749869095467945218")),
    (
        "https://www.tiktok.com/foryou?is_from_webapp=v1&item_id=7240568259186019630",
        post("7240568259186019630"),
    ),
    ("https://www.tiktok.com/?item_id=7240568259186019630", post("7240568259186019630")),
    (
        f"https://www.tiktok.com/@hankgreen1/video/{HANK}?is_from_webapp=1&sender_device=pc&web_id=7071234567890",
        post(HANK, "hankgreen1"),
    ),
    (f"https://www.tiktok.com/@hankgreen1/video/{HANK}#comments", post(HANK, "hankgreen1")),
    (f"https://www.tiktok.com/@user.name-with_all/video/{HANK}", post(HANK, "user.name-with_all")),
    # accounts by numeric id: youtube-dl's TikTokUserIE (2019) `(?:m\.)?tiktok\.com/h5/share/usr/<id>` and
    # `(?:www\.)?tiktok\.com/share/user/<id>`, with its test account 188294915489964032
    ("https://www.tiktok.com/share/user/188294915489964032", user_by_id("188294915489964032")),
    ("tiktok.com/share/user/188294915489964032/?lang=en", user_by_id("188294915489964032")),
    ("https://m.tiktok.com/h5/share/usr/188294915489964032.html", user_by_id("188294915489964032")),
    (
        "https://m.tiktok.com/h5/share/usr/6641141594707361797.html?_d=secCgYIASAHKAE&language=en",
        user_by_id("6641141594707361797"),
    ),
    # a post page whose id is only in the query
    ("https://www.tiktok.com/share/video?item_id=7240568259186019630", post("7240568259186019630")),
    ("https://m.tiktok.com/v/?item_id=7240568259186019630&lang=en", post("7240568259186019630")),
    ("https://www.tiktok.com/embed?item_id=7240568259186019630", post("7240568259186019630")),
    (
        "https://www.tiktok.com/@chillezy/video?is_from_webapp=1&item_id=7240568259186019630",
        post("7240568259186019630", "chillezy"),
    ),
    (
        "https://www.tiktok.com/@chillezy/photo?item_id=7240568259186019630",
        post("7240568259186019630", "chillezy"),
    ),
    ("https://www.tiktok.com/@meme?is_from_webapp=1&sender_device=pc", user("meme")),
    ("https://www.tiktok.com/@some.user_name-x", user("some.user_name-x")),
    ("https://www.tiktok.com/tag/fyp%E3%82%B7", tag("fypシ", "fyp%E3%82%B7")),
    ("https://www.tiktok.com/tag/hello2018?lang=en", tag("hello2018")),
    # chat text: punctuation, brackets, markdown, HTML-ish
    ("look: https://vm.tiktok.com/ZMabc/!", short("ZMabc")),
    ("(https://vm.tiktok.com/ZSe4FqkKd/)", short("ZSe4FqkKd")),
    (
        "[clip](https://www.tiktok.com/@tatemcrae/video/7107337212743830830)",
        post("7107337212743830830", "tatemcrae"),
    ),
    (
        '<a href="https://www.tiktok.com/@tatemcrae/video/7107337212743830830?lang=en">x</a>',
        post("7107337212743830830", "tatemcrae"),
    ),
    (
        "&quot;https://www.tiktok.com/@tatemcrae/video/7107337212743830830&quot;",
        post("7107337212743830830", "tatemcrae"),
    ),
    ("<https://vt.tiktok.com/ZSe4FqkKd>", short("ZSe4FqkKd", "vt")),
    (f"https://www.tiktok.com/@hankgreen1/video/{HANK}.", post(HANK, "hankgreen1")),
    (f"watch this: https://www.tiktok.com/@hankgreen1/video/{HANK}, lol", post(HANK, "hankgreen1")),
    (f"https://www.tiktok.com/@hankgreen1/video/{HANK}?", post(HANK, "hankgreen1")),
    ("«https://vm.tiktok.com/ZSe4FqkKd/»", short("ZSe4FqkKd")),
    ("**https://vt.tiktok.com/ZSe4FqkKd/**", short("ZSe4FqkKd", "vt")),
    ("`https://vm.tiktok.com/ZSe4FqkKd/`", short("ZSe4FqkKd")),
    ("Смотри:https://vm.tiktok.com/ZSe4FqkKd/", short("ZSe4FqkKd")),
    ("見て https://vm.tiktok.com/ZSe4FqkKd/。", short("ZSe4FqkKd")),
    ("'https://www.tiktok.com/@chillezy'", user("chillezy")),
    ("see tiktok.com/@chillezy.", user("chillezy")),
    # found by hypothesis: a full stop before an HTML entity or a query is still sentence punctuation
    ("see tiktok.com/@chillezy.&quot;", user("chillezy")),
    ("tiktok.com/@chillezy.?lang=en", user("chillezy")),
    ("tiktok.com/@user.name./", user("user.name")),
    (
        "href=https://www.tiktok.com/@chillezy/photo/7240568259186019630>",
        post("7240568259186019630", "chillezy"),
    ),
]

NOT_LINKS: list[str] = [
    # look-alike hosts
    f"faketiktok.com/@a/video/{HANK}",
    f"https://faketiktok.com/@a/video/{HANK}",
    f"https://tiktok.com.evil.net/@a/video/{HANK}",
    f"https://www.tiktok.com.evil.net/@a/video/{HANK}",
    f"https://www.tiktok.com@evil.net/@a/video/{HANK}",
    f"https://www.tiktok.com:pass@evil.net/@a/video/{HANK}",
    f"https://user:pass@www.tiktok.com/@a/video/{HANK}",
    f"https://evil.net/www.tiktok.com/@a/video/{HANK}",
    f"https://evil.net/?u=tiktok.com/@a/video/{HANK}",
    f"https://tiktok.company/@a/video/{HANK}",
    f"https://tiktok.co/@a/video/{HANK}",
    f"https://tiktok-com.evil.net/@a/video/{HANK}",
    f"https://www.tiktok.com:8080/@a/video/{HANK}",
    f"https://evil-tiktok.com/@a/video/{HANK}",
    "https://xvm.tiktok.com/ZSe4FqkKd/ and https://vm.tiktok.com.evil.net/ZSe4FqkKd/",
    f"ftp://www.tiktok.com/@a/video/{HANK}",
    f"javascript://www.tiktok.com/@a/video/{HANK}",
    f"mail support@tiktok.com/@a/video/{HANK}",
    "https://www.douyin.com/video/6950251282489675042",
    # non-media pages
    "https://www.tiktok.com/about",
    "https://www.tiktok.com/login",
    "https://www.tiktok.com/explore",
    "https://www.tiktok.com/foryou",
    "https://www.tiktok.com/following",
    "https://www.tiktok.com/legal/page/global/terms-of-service/en",
    "https://www.tiktok.com/",
    "https://www.tiktok.com/?_r=1",
    "tiktok.com",
    "https://support.tiktok.com/en/account-and-privacy",
    "https://ads.tiktok.com/i18n/share/video/7240568259186019630",
    "https://www.tiktok.com/@iris04201/live",
    "https://m.tiktok.com/share/live/7209423610325322522/?language=en",
    "https://www.tiktok.com/@imanoreotwe/collection/count-test-7371330159376370462",
    "https://www.tiktok.com/sticker/Elf-Friend-479565",
    "https://v16-webapp-prime.tiktok.com/video/tos/useast2a/tos-useast2a-pve-0068/abc/?tk=tt_chain_token",
    # malformed ids, codes and names
    "https://www.tiktok.com/@a/video/12345678901234567890123",
    "https://www.tiktok.com/@a/video/abc",
    "https://www.tiktok.com/@a/video/123abc",
    "https://www.tiktok.com/@a/video/-1",
    "https://www.tiktok.com/@a/video/",
    "https://www.tiktok.com/@a//video/1",
    "https://www.tiktok.com/@a/video/1/extra",
    "https://www.tiktok.com/embed/v2/abc",
    "https://m.tiktok.com/v/12ab.html",
    "https://www.tiktok.com/@a!b/video/1",
    "https://www.tiktok.com/@",
    "https://vm.tiktok.com/",
    "https://vm.tiktok.com/ZM/",
    "https://vm.tiktok.com/ZMabc/extra",
    "https://vm.tiktok.com/ZM$abc/",
    "https://www.tiktok.com/t/",
    "https://www.tiktok.com/music/no-id-here",
    "https://www.tiktok.com/tag/",
    "https://www.tiktok.com/tag/not-a-tag",
    "https://www.tiktok.com/explore?item_id=abc",
    # look-alikes of the numeric-account and query-id forms
    "https://www.tiktok.com/share/user/",
    "https://www.tiktok.com/share/user/zachking",
    "https://www.tiktok.com/share/user/12ab34",
    "https://www.tiktok.com/share/user/188294915489964032/extra",
    "https://www.tiktok.com/share/users/188294915489964032",
    "https://m.tiktok.com/h5/share/usr/188294915489964032.htm",
    "https://m.tiktok.com/h5/share/usr/abc.html",
    "https://m.tiktok.com/h5/share/usr/.html",
    "https://m.tiktok.com/h5/share/usr/1234567890123456789012.html",
    "https://vm.tiktok.com/share/user/188294915489964032",
    "https://www.tiktokv.com/share/user/188294915489964032",
    "https://faketiktok.com/share/user/188294915489964032",
    "https://www.tiktok.com.evil.net/h5/share/usr/188294915489964032.html",
    "https://www.tiktok.com:8443/share/user/188294915489964032",
    "https://www.tiktok.com/share/video?item_id=abc",
    "https://www.tiktok.com/share/video?item_id=",
    "https://www.tiktok.com/share/video?xitem_id=7240568259186019630",
    "https://www.tiktok.com/share/video?item_idx=7240568259186019630",
    "https://www.tiktok.com/share/video#item_id=7240568259186019630",
    "https://www.tiktok.com/@bob/live?item_id=7240568259186019630",
    "https://www.tiktok.com/@bob/collection?item_id=7240568259186019630",
    "https://www.tiktok.com/@b!b/video?item_id=7240568259186019630",
    "https://www.tiktok.com/share/video?item_id=12345678901234567890123",
    "https://www.tiktokv.com/@chillezy",
]


@pytest.mark.parametrize(("text", "expected"), FORMS, ids=[text for text, _ in FORMS])
def test_url_forms(text: str, expected: TikTokLink) -> None:
    assert find_links(text) == [expected]


def test_the_table_is_big_enough() -> None:
    assert len(FORMS) >= 80
    assert len(NOT_LINKS) >= 20


@pytest.mark.parametrize("text", NOT_LINKS)
def test_not_links(text: str) -> None:
    assert find_links(text) == []


def test_order_and_dedup() -> None:
    text = (
        "first https://vm.tiktok.com/ZSe4FqkKd/ then "
        f"https://www.tiktok.com/@hankgreen1/video/{HANK}?lang=en and again m.tiktok.com/v/{HANK}.html "
        "VM.TIKTOK.COM/ZSe4FqkKd tiktok.com/@Meme www.tiktok.com/@meme/ "
        "tiktok.com/tag/FYP tiktok.com/tag/fyp www.tiktok.com/music/a-1 tiktok.com/music/b-1"
    )
    assert find_links(text, limit=50) == [
        short("ZSe4FqkKd"),
        post(HANK, "hankgreen1"),
        user("Meme"),
        tag("FYP"),
        music("a-1"),
    ]


def test_limit_counts_distinct_links() -> None:
    text = " ".join(f"https://www.tiktok.com/@u/video/{i}" for i in (1, 1, 2, 2, 3, 4, 5, 6, 7))
    assert [link.post_id for link in find_links(text)] == ["1", "2", "3", "4", "5"]
    assert [link.post_id for link in find_links(text, limit=2)] == ["1", "2"]
    assert find_links(text, limit=0) == []


def test_glued_links_are_two() -> None:
    text = "https://vm.tiktok.com/ZMabc1/,https://vt.tiktok.com/ZMdef2"
    assert find_links(text) == [short("ZMabc1"), short("ZMdef2", "vt")]


def test_many_links_in_one_line() -> None:
    text = "\n".join(
        [
            "- [one](https://www.tiktok.com/@a/video/11)",
            '- <a href="https://vt.tiktok.com/ZZZ111/">two</a>',
            "- three: tiktok.com/@b.c/photo/22!!",
            "- four (https://www.tiktokv.com/share/video/33/)",
        ]
    )
    assert find_links(text) == [post("11", "a"), short("ZZZ111", "vt"), post("22", "b.c"), post("33")]


def test_post_url_is_canonical_and_query_free() -> None:
    (link,) = find_links(f"https://m.tiktok.com/@x/photo/{HANK}?a=1#b")
    assert link.url == f"https://www.tiktok.com/@x/video/{HANK}"
    (link,) = find_links(f"https://www.tiktok.com/embed/{HANK}")
    assert link.url == f"https://www.tiktok.com/@_/video/{HANK}"


def test_as_json_has_every_key() -> None:
    assert short("ZSe4FqkKd").as_json() == {
        "kind": "short",
        "url": "https://vm.tiktok.com/ZSe4FqkKd/",
        "post_id": None,
        "username": None,
        "tag": None,
        "code": "ZSe4FqkKd",
        "user_id": None,
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"https://www.tiktok.com/@u/video/{HANK}?_r=1", post(HANK, "u")),
        ("https://vm.tiktok.com/ZSe4FqkKd/", short("ZSe4FqkKd")),
        ("https://www.tiktok.com/", None),
        (f"https://www.tiktok.com@evil.net/@u/video/{HANK}", None),
        (f"https://evil.net/?u=https://www.tiktok.com/@u/video/{HANK}", None),
        (f"see https://www.tiktok.com/@u/video/{HANK}", None),
    ],
)
def test_parse_link_needs_the_whole_url(url: str, expected: TikTokLink | None) -> None:
    assert parse_link(url) == expected


# --- bad input -------------------------------------------------------------------------------------

NOISE = [
    "", " ", "\n", "(", ")", "[", "]", "<", ">", '"', "'", "`", "*", "«", "»", "。", "=", "@", ":", ".", "/",
    "\x00", "\ud800", "é", "\u200b", "fake", "evil.net/", "see:", "&quot;",
]  # fmt: skip
SEGMENTS = [
    "@user.name", "@", "@_x-y", "@a!b", "video", "photo", "VIDEO", "share", "i18n", "embed", "v2", "player",
    "v1", "v", "t", "tag", "music", "1", "7047596209028074758", "12345678901234567890123", "12ab",
    "ZSe4FqkKd", "ZM", "fypシ", "%E3%82%B7", "%", "song-123", "123.html", "about", "explore", "foryou", "",
    "..", "live",
]  # fmt: skip

urls = st.tuples(
    st.sampled_from(["", "https://", "http://", "//", "HTTPS://", "ftp://", "x", "https://user@"]),
    st.sampled_from(["", "www.", "m.", "vm.", "vt.", "WWW.", "evil.", "fake", "www.vm."]),
    st.sampled_from(
        ["tiktok.com", "tiktokv.com", "TikTok.COM", "tiktok.com.evil.net", "tiktok.com@evil.net"]
    ),
    st.lists(st.sampled_from(SEGMENTS), max_size=4).map(lambda parts: "".join("/" + p for p in parts)),
    st.sampled_from(["", "/", "?lang=en", "?item_id=123", "?shareId=7047596209028074758", "#x", "?a=1&b=2"]),
    st.sampled_from(["", ".", "!", ")", ",", "…", "!!", "/"]),
).map("".join)
known = st.sampled_from([text for text, _ in FORMS] + NOT_LINKS)
url_soup = st.lists(st.one_of(urls, known, st.sampled_from(NOISE)), max_size=8).map("".join)


def check_invariants(links: list[TikTokLink], limit: int) -> None:
    assert len(links) <= limit
    keys = [(link.kind, link.post_id, link.code, link.username, link.tag, link.url) for link in links]
    assert len(set(keys)) == len(keys)
    for link in links:
        assert is_allowed_url(link.url), link
        if link.kind is LinkKind.POST:
            assert link.post_id is not None and link.post_id.isascii() and link.post_id.isdigit()
            assert 1 <= len(link.post_id) <= 21
            assert link.url == canonical_post_url(link.post_id, link.username)
        else:
            assert link.post_id is None
        # A found link's own URL is that same link.
        assert find_links(link.url) == [link]


@settings(max_examples=400, deadline=None)
@given(text=url_soup, limit=st.integers(min_value=0, max_value=8))
def test_url_soup_never_raises(text: str, limit: int) -> None:
    check_invariants(find_links(text, limit=limit), limit)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_never_raises(text: str) -> None:
    check_invariants(find_links(text), 5)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=500))
def test_binary_garbage(data: bytes) -> None:
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        check_invariants(find_links(text), 5)


# Generous bounds: these guard against quadratic or exponential behaviour, not for speed (see bench/links.py).
SLOW = 5.0


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "https://www.tiktok.com/@" + "a" * 1_000_000,
        "https://www.tiktok.com/" + "/" * 1_000_000,
        "tiktok.com" * 100_000,
        "https://tiktok.com/x " * 50_000,
        "https://tiktok.com/x" * 50_000,
        "faketiktok.com/@a/video/1 " * 40_000,
        "www." * 250_000 + "tiktok.com/@a/video/1",
        "https://vm.tiktok.com/" + "Z" * 1_000_000,
    ],
    ids=[
        "letters",
        "long-user",
        "slashes",
        "hosts-glued",
        "short-urls",
        "glued-urls",
        "fakes",
        "www",
        "long-code",
    ],
)
def test_a_megabyte_returns_promptly(text: str) -> None:
    started = time.perf_counter()
    find_links(text)
    assert time.perf_counter() - started < SLOW


def test_ten_thousand_links_return_promptly() -> None:
    text = " ".join(f"https://www.tiktok.com/@u/video/{i}" for i in range(10_000))
    started = time.perf_counter()
    links = find_links(text)
    assert time.perf_counter() - started < SLOW
    assert [link.post_id for link in links] == ["0", "1", "2", "3", "4"]
    # Even when every one of them must be read.
    started = time.perf_counter()
    assert len(find_links(text, limit=20_000)) == 10_000
    assert len(find_links(" ".join(["https://vm.tiktok.com/ZMabc/"] * 10_000), limit=20_000)) == 1
    assert time.perf_counter() - started < SLOW


def test_random_megabyte_of_binary() -> None:
    rng = random.Random(3)
    blob = rng.randbytes(1_000_000).decode("latin-1") + os.urandom(16).hex()
    started = time.perf_counter()
    assert find_links(blob) == []
    assert time.perf_counter() - started < SLOW
