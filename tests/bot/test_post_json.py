"""The post's metadata kept beside its cached media: a JSON round trip through pydantic's TypeAdapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.chat.flow import _post_from_json, _post_to_json
from services.metadata.models import Music, Post, Stats

FULL = Post(
    id="7301444403200000001",
    url="https://www.tiktok.com/@sandbox.cook/video/7301444403200000001",
    author="sandbox.cook",
    author_name="Sandbox Cook",
    description="Dish number 1 #food",
    created=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    duration=3.5,
    width=320,
    height=568,
    stats=Stats(views=1000, likes=100, comments=7, shares=None, saves=2),
    music=Music(id="m1", title="original sound", author="Sandbox Cook", duration=3.0),
    hashtags=("food",),
    is_photo=True,
    image_count=3,
    cover="https://p16-sign.tiktokcdn.com/cover.jpg",
    region="US",
)

# What the bot wrote before the TypeAdapter (asdict + json.dumps): still readable after an upgrade.
EARLIER = (
    '{"id":"7301444403200000001","url":"https://www.tiktok.com/@sandbox.cook/video/7301444403200000001",'
    '"author":"sandbox.cook","author_name":"Sandbox Cook","description":"Dish number 1 #food",'
    '"created":"2024-05-01T12:30:00+00:00","duration":3.5,"width":320,"height":568,'
    '"stats":{"views":1000,"likes":100,"comments":7,"shares":null,"saves":2},'
    '"music":{"id":"m1","title":"original sound","author":"Sandbox Cook","duration":3.0},'
    '"hashtags":["food"],"is_photo":true,"image_count":3,"cover":"https://p16-sign.tiktokcdn.com/cover.jpg",'
    '"region":"US"}'
)


@pytest.mark.parametrize("post", [FULL, Post(id="1", url="https://www.tiktok.com/@a/video/1")])
def test_round_trip_gives_the_same_post(post: Post) -> None:
    assert _post_from_json(_post_to_json(post)) == post


def test_reads_what_the_previous_version_stored() -> None:
    assert _post_from_json(EARLIER) == FULL


def test_text_from_tiktok_is_cleaned_again_when_read() -> None:
    # The model cleans bidi controls on construction; a stored value that has one (an older writer) loses it.
    text = _post_to_json(FULL).replace("Sandbox Cook", "Sandbox \u202eCook", 1)
    read = _post_from_json(text)
    assert read is not None and read.author_name == "Sandbox Cook"


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", "[]", '{"id": "1"}', '{"id": "1", "url": "u", "stats": {"views": "many"}}'],
)
def test_unreadable_value_reads_as_no_post(text: str) -> None:
    assert _post_from_json(text) is None
