"""The sent-media cache keys both senders and the inline mode share."""

from __future__ import annotations

from bot.chat.variants import is_photo, photo_index, photo_variant, photo_variants, variant_prefix
from services.download.models import Quality, Want


def test_photo_variants_round_trip_in_slideshow_order() -> None:
    keys = [photo_variant(i) for i in (10, 2, 0)] + ["audio", "video"]
    assert photo_variants(keys) == ["photo:0", "photo:2", "photo:10"]
    assert [photo_index(k) for k in photo_variants(keys)] == [0, 2, 10]
    assert not is_photo("audio")


def test_families_keep_their_stored_format() -> None:
    # Rows already in media_cache use these prefixes: changing them would orphan every cached file.
    assert variant_prefix(Want.VIDEO) == "media:"
    assert variant_prefix(Want.VIDEO, Quality.BEST) == "media@best:"
    assert variant_prefix(Want.AUDIO, Quality.BEST) == "audio:"
