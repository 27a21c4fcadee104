"""Pure parts of the Discord frontend: message packing, link re-sends and expiry, embeds, translations."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.chat.cards import Card, post_card
from bot.chat.flow import StaleReference
from bot.discord.client import CatalogueTranslator, localised
from bot.discord.render import CONTENT_LIMIT, DESCRIPTION_LIMIT, card_embed, code_block
from bot.discord.sender import (
    EXPIRY_MARGIN,
    FILES_PER_MESSAGE,
    LINKS_PER_MESSAGE,
    check_fresh,
    link_batches,
    link_expiry,
    pack,
)
from services.download.models import FileRole, MediaFile
from services.errors import TooLarge
from services.metadata.models import Post, Stats


def media(size: int, n: int = 0) -> MediaFile:
    return MediaFile(path=Path(f"/tmp/{n}.jpg"), mime="image/jpeg", size=size, role=FileRole.PHOTO)


def test_pack_keeps_order_and_starts_a_message_at_ten_files_or_the_byte_limit() -> None:
    items = [(f"photo:{i}", media(100, i)) for i in range(12)]
    batches = pack(items, limit=10_000)
    assert [len(b.files) for b in batches] == [10, 2]
    assert [v for b in batches for v in b.variants] == [f"photo:{i}" for i in range(12)]
    by_bytes = pack(items[:5], limit=250)
    assert [b.variants for b in by_bytes] == [["photo:0", "photo:1"], ["photo:2", "photo:3"], ["photo:4"]]


def test_pack_refuses_a_file_over_the_limit() -> None:
    with pytest.raises(TooLarge) as caught:
        pack([("video", media(501))], limit=500)
    assert caught.value.size == 501 and caught.value.limit == 500


@given(st.lists(st.integers(min_value=1, max_value=1000), max_size=40), st.integers(1000, 5000))
def test_pack_never_overfills_a_message(sizes: list[int], limit: int) -> None:
    items = [(str(i), media(size, i)) for i, size in enumerate(sizes)]
    batches = pack(items, limit=limit)
    assert [v for b in batches for v in b.variants] == [str(i) for i in range(len(sizes))]
    assert all(0 < len(b.files) <= FILES_PER_MESSAGE and b.size <= limit for b in batches)
    # A new message starts only when the next file would not fit in the previous one.
    for before, after in itertools.pairwise(batches):
        assert len(before.files) == FILES_PER_MESSAGE or before.size + after.files[0].size > limit


def test_link_batches_respect_the_link_count_and_the_content_limit() -> None:
    urls = [f"https://cdn.example/attachments/1/{i}/p.jpg?ex=ffffffff&is=0&hm={'a' * 64}" for i in range(12)]
    contents = link_batches(urls, CONTENT_LIMIT)
    assert [c.count("\n") + 1 for c in contents] == [LINKS_PER_MESSAGE, 12 - LINKS_PER_MESSAGE]
    assert "\n".join(contents).split("\n") == urls
    long = ["https://cdn.example/" + "x" * 900 for _ in range(3)]
    assert [len(c) <= CONTENT_LIMIT for c in link_batches(long, CONTENT_LIMIT)] == [True, True]


def test_link_expiry_and_freshness() -> None:
    now = 1_700_000_000.0
    fresh = f"https://cdn/a.mp4?ex={int(now + 3600):x}&is={int(now):x}&hm=ab"
    assert link_expiry(fresh) == int(now + 3600)
    check_fresh({"video": fresh}, now=now)
    soon = f"https://cdn/a.mp4?ex={int(now + EXPIRY_MARGIN / 2):x}&hm=ab"
    for stale in (
        soon,
        "https://cdn/a.mp4?ex=zz",
        "https://cdn/a.mp4",
        f"https://cdn/a.mp4?ex={int(now) - 1:x}",
    ):
        with pytest.raises(StaleReference):
            check_fresh({"video": fresh, "photo:0": stale}, now=now)
    check_fresh({"video": f"https://cdn/a.mp4?ex={int(time.time()) + 86400:x}"})


def sample_post(description: str) -> Post:
    return Post(
        id="1",
        url="https://www.tiktok.com/@a_b/video/1",
        author="a_b",
        description=description,
        stats=Stats(views=1_500_000, likes=2, comments=None, shares=4),
    )


def test_post_embed_carries_author_linked_title_stats_and_escaped_text() -> None:
    embed = card_embed(post_card(sample_post("*not bold* [x](https://evil) __u__"), "en"), "en")
    assert embed.author.name == "@a_b" and embed.title == "Open on TikTok"
    assert embed.url == "https://www.tiktok.com/@a_b/video/1"
    assert embed.description == r"\*not bold\* \[x\](https://evil) \_\_u\_\_"
    assert [(f.name, f.value) for f in embed.fields] == [
        ("👁 views", "1.5M"),
        ("❤️ likes", "2"),
        ("↗️ shares", "4"),
    ]
    ru = card_embed(post_card(sample_post(""), "ru"), "ru")
    assert ru.title == "Открыть в TikTok" and ru.description is None


def test_rows_become_links_and_the_embed_stays_within_discord_limits() -> None:
    rows = tuple((f"{i}. [bracket] " + "y" * 400, f"https://www.tiktok.com/@u/video/{i}") for i in range(40))
    card = Card(title="#tag " * 100, url="https://www.tiktok.com/tag/tag", text="z" * 5000, lines=rows)
    embed = card_embed(card, "en")
    assert embed.description is not None and len(embed.description) <= DESCRIPTION_LIMIT
    assert embed.title is not None and len(embed.title) <= 256
    assert r"](https://www.tiktok.com/@u/video/0)" in embed.description or "z" * 4000 in embed.description
    assert len(embed) <= 6000
    linked = card_embed(Card(title="#t", url="https://u", lines=rows[:2]), "en")
    assert linked.description == "\n".join(
        rf"[{i}. \[bracket\] {'y' * 400}](https://www.tiktok.com/@u/video/{i})" for i in range(2)
    )


def test_code_block_fits_its_limit() -> None:
    block = code_block(["x" * 50] * 100, limit=600)
    assert len(block) <= 600 and block.startswith("```\n") and block.endswith("\n```")
    assert code_block(["a ``` b"]) == "```\na ''' b\n```"


async def test_command_descriptions_translate_from_the_catalogues() -> None:
    translator = CatalogueTranslator()
    text = localised("cmd.post")
    assert text.message == "Stats of a TikTok post"
    context = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.other, None
    )
    assert await translator.translate(text, discord.Locale.russian, context) == "Статистика публикации TikTok"
    assert await translator.translate(text, discord.Locale.american_english, context) is None
    assert await translator.translate(text, discord.Locale.german, context) is None
    plain = discord.app_commands.locale_str("no key")
    assert await translator.translate(plain, discord.Locale.russian, context) is None
