"""The emulated Telegram: users, chats (with forum topics and admins) and the messages in them."""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Json = dict[str, Any]

# Forum topic icon colours Telegram allows.
TOPIC_COLORS = (0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F)
GENERAL_TOPIC_ID = 1


class ChatType(StrEnum):
    """Telegram's chat types."""

    PRIVATE = "private"
    GROUP = "group"
    SUPERGROUP = "supergroup"
    CHANNEL = "channel"


@dataclass(slots=True)
class User:
    """A Telegram account (a person or a bot)."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False
    is_premium: bool = False

    def json(self) -> Json:
        """The Bot API `User` object."""
        data: Json = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        if self.is_premium:
            data["is_premium"] = True
        return data


@dataclass(slots=True)
class Topic:
    """A forum topic; its id is the id of the service message that created it."""

    thread_id: int
    name: str
    icon_color: int
    created: Json


@dataclass(slots=True)
class Chat:
    """A chat and everything the emulator knows about it."""

    id: int
    type: ChatType
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    is_forum: bool = False
    # The bot's standing: "member", "administrator", "left" or "kicked".
    bot_status: str = "member"
    bot_can_delete: bool = False
    blocked: bool = False  # a private chat whose user blocked the bot
    owner_id: int | None = None
    admins: dict[int, bool] = field(default_factory=dict)  # user id -> can_delete_messages
    topics: dict[int, Topic] = field(default_factory=dict)
    messages: dict[int, Json] = field(default_factory=dict)
    by_bot: set[int] = field(default_factory=set)  # ids of messages the bot sent
    next_message_id: int = 1

    def json(self) -> Json:
        """The Bot API `Chat` object, as it appears inside messages."""
        data: Json = {"id": self.id, "type": self.type.value}
        if self.title:
            data["title"] = self.title
        if self.username:
            data["username"] = self.username
        if self.first_name:
            data["first_name"] = self.first_name
        if self.last_name:
            data["last_name"] = self.last_name
        if self.is_forum:
            data["is_forum"] = True
        return data

    def allocate_id(self) -> int:
        """The next message id in this chat (ids increase per chat)."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    @property
    def is_group(self) -> bool:
        """A basic group or a supergroup."""
        return self.type in (ChatType.GROUP, ChatType.SUPERGROUP)

    @property
    def kind_name(self) -> str:
        """How Bot API errors name this chat's type ("group chat", "supergroup chat", ...)."""
        return {
            ChatType.PRIVATE: "private chat",
            ChatType.GROUP: "group chat",
            ChatType.SUPERGROUP: "supergroup chat",
            ChatType.CHANNEL: "channel chat",
        }[self.type]


def reply_copy(message: Json) -> Json:
    """A message as it is embedded in `reply_to_message` (one level deep, as Telegram does)."""
    embedded = copy.deepcopy(message)
    embedded.pop("reply_to_message", None)
    return embedded


class World:
    """Users and chats, with id allocation the way Telegram shapes ids."""

    def __init__(self, bot: User) -> None:
        self.bot = bot
        self.users: dict[int, User] = {bot.id: bot}
        self.chats: dict[int, Chat] = {}
        self._user_ids = itertools.count(100_000_001)
        self._group_ids = itertools.count(4_000_000_001)
        self._channel_ids = itertools.count(1_000_000_000_001)

    def add_user(
        self,
        first_name: str,
        *,
        id: int | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        is_bot: bool = False,
        is_premium: bool = False,
    ) -> User:
        """A new (or replaced) user."""
        user_id = next(self._user_ids) if id is None else id
        user = User(user_id, first_name, last_name, username, language_code, is_bot, is_premium)
        self.users[user_id] = user
        return user

    def private_chat(self, user: User) -> Chat:
        """The private chat between `user` and the bot (its id is the user's id)."""
        chat = self.chats.get(user.id)
        if chat is None:
            chat = Chat(
                user.id,
                ChatType.PRIVATE,
                username=user.username,
                first_name=user.first_name,
                last_name=user.last_name,
            )
            self.chats[user.id] = chat
        return chat

    def add_chat(
        self,
        chat_type: ChatType,
        title: str,
        *,
        id: int | None = None,
        username: str | None = None,
        is_forum: bool = False,
        bot_status: str | None = None,
        bot_can_delete: bool = False,
        owner: User | None = None,
    ) -> Chat:
        """A new group, supergroup or channel with the bot in it."""
        if chat_type == ChatType.PRIVATE:
            raise ValueError("use private_chat(user) for private chats")
        if id is None:
            counter = self._group_ids if chat_type == ChatType.GROUP else self._channel_ids
            id = -next(counter)
        if bot_status is None:
            # A bot can only post in a channel as an administrator.
            bot_status = "administrator" if chat_type == ChatType.CHANNEL else "member"
        chat = Chat(
            id,
            chat_type,
            title=title,
            username=username,
            is_forum=is_forum and chat_type == ChatType.SUPERGROUP,
            bot_status=bot_status,
            bot_can_delete=bot_can_delete,
            owner_id=owner.id if owner else None,
        )
        if owner is not None:
            chat.admins[owner.id] = True
        if chat.is_forum:
            # Message 1 of a forum opened the General topic, whose thread id is 1.
            chat.next_message_id = GENERAL_TOPIC_ID + 1
        self.chats[id] = chat
        return chat

    def find_chat(self, ref: int | str | None) -> Chat | None:
        """A chat by id or `@username`."""
        if ref is None:
            return None
        if isinstance(ref, int):
            return self.chats.get(ref)
        name = ref.lstrip("@").lower()
        for chat in self.chats.values():
            if chat.username and chat.username.lower() == name and chat.type != ChatType.PRIVATE:
                return chat
        return None

    def add_topic(self, chat: Chat, name: str, *, creator: User | None = None) -> Topic:
        """Open a forum topic: a `forum_topic_created` service message whose id becomes the thread id."""
        if not chat.is_forum:
            raise ValueError(f"chat {chat.id} is not a forum")
        thread_id = chat.allocate_id()
        color = TOPIC_COLORS[len(chat.topics) % len(TOPIC_COLORS)]
        created: Json = {
            "message_id": thread_id,
            "from": (creator or self.bot).json(),
            "chat": chat.json(),
            "date": int(time.time()),
            "message_thread_id": thread_id,
            "forum_topic_created": {"name": name, "icon_color": color},
            "is_topic_message": True,
        }
        chat.messages[thread_id] = created
        topic = Topic(thread_id, name, color, created)
        chat.topics[thread_id] = topic
        return topic

    def new_message(
        self,
        chat: Chat,
        content: Json,
        *,
        sender: User | None = None,
        sender_chat: Chat | None = None,
        topic: Topic | None = None,
        reply_to: Json | None = None,
        reply_markup: Json | None = None,
        extra: Json | None = None,
    ) -> Json:
        """Store and return a new message in `chat` (id allocated, date now)."""
        message: Json = {"message_id": chat.allocate_id()}
        if sender is not None:
            message["from"] = sender.json()
        if sender_chat is not None:
            message["sender_chat"] = sender_chat.json()
        message["chat"] = chat.json()
        message["date"] = int(time.time())
        if topic is not None:
            message["message_thread_id"] = topic.thread_id
        if reply_to is not None:
            message["reply_to_message"] = reply_copy(reply_to)
        elif topic is not None:
            # In a topic, a message that replies to nothing replies to the topic's creation message.
            message["reply_to_message"] = reply_copy(topic.created)
        message.update(content)
        if extra:
            message.update(extra)
        if topic is not None:
            message["is_topic_message"] = True
        if reply_markup is not None:
            message["reply_markup"] = reply_markup
        chat.messages[message["message_id"]] = message
        return message
