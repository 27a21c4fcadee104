"""DISCORD__SHARD_IDS / DISCORD__SHARD_COUNT: which shards this process runs, and refusals of nonsense."""

from __future__ import annotations

from typing import Any, cast

import pytest
from discord.ext import commands

from bot.config import SettingsError, settings_from
from bot.discord.client import ShardedTikTokBot, TikTokBot, make_bot
from bot.wiring import App


class _App:
    def __init__(self, env: dict[str, str]) -> None:
        self.settings = settings_from({"DISCORD__TOKEN": "t", **env})
        self.deliveries = None  # the bot keeps a handle; nothing here delivers


def bot_for(env: dict[str, str]) -> TikTokBot:
    return make_bot(cast(App, _App(env)))


async def test_one_process_by_default() -> None:
    bot = bot_for({})
    assert type(bot) is TikTokBot
    await bot.close()


async def test_this_process_runs_its_shards_of_the_total() -> None:
    bot: Any = bot_for({"DISCORD__SHARD_IDS": "2,3", "DISCORD__SHARD_COUNT": "4"})
    assert isinstance(bot, ShardedTikTokBot) and isinstance(bot, commands.AutoShardedBot)
    assert (bot.shard_ids, bot.shard_count) == ([2, 3], 4)
    await bot.close()


async def test_a_count_alone_runs_every_shard() -> None:
    bot: Any = bot_for({"DISCORD__SHARD_COUNT": "2"})
    assert (bot.shard_ids, bot.shard_count) == ([0, 1], 2)
    await bot.close()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DISCORD__SHARD_IDS": "0"}, "needs DISCORD__SHARD_COUNT"),
        ({"DISCORD__SHARD_IDS": "0,4", "DISCORD__SHARD_COUNT": "4"}, "between 0 and 3"),
    ],
)
def test_nonsense_is_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        settings_from(env)
