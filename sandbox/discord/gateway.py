"""The emulated gateway: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME, sequenced dispatch.

A session outlives its socket as Discord's does: "If you simply close the TCP connection or use a different
close code [than 1000/1001], the session will remain active and timeout after a few minutes" (Discord
developer docs, Gateway → Initiating a Disconnect). While it waits it keeps its dispatches; a RESUME with
the session's id and the last sequence the client saw replays every later dispatch in order, then RESUMED.
Discord documents no exact window or buffer size: the emulator keeps a dead session `resume_timeout` seconds
(default 180, "a few minutes") and its last `BACKLOG` dispatches. Past the window, or for an unknown id,
RESUME gets op 9 INVALID_SESSION d=false ("It's possible your app won't reconnect in time to Resume"); a
sequence the session never reached closes the socket with 4007 Invalid seq; one older than what is still
kept (nothing can be replayed faithfully) gets op 9 d=false as well, and the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sandbox.discord.world import JSON, PRIVILEGED_INTENTS, Intent, World

log = logging.getLogger(__name__)

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_ACK = 6, 7, 8, 9, 10, 11

CLOSE_UNKNOWN_OPCODE, CLOSE_DECODE_ERROR, CLOSE_NOT_AUTHENTICATED = 4001, 4002, 4003
CLOSE_AUTH_FAILED, CLOSE_ALREADY_AUTHENTICATED, CLOSE_INVALID_SEQ = 4004, 4005, 4007
CLOSE_INVALID_SHARD, CLOSE_INVALID_INTENTS, CLOSE_DISALLOWED_INTENTS = 4010, 4013, 4014

BACKLOG = 5000  # dispatches a session keeps for a RESUME (Discord does not document its own bound)
RESUME_TIMEOUT = 180.0  # seconds a session without a socket stays resumable ("a few minutes")
# Build one event per session: None means the session does not receive it (intents, visibility).
EventBuilder = Callable[["Session"], JSON | None]


@dataclass(eq=False)
class Connection:
    """One websocket; frames go out in order, zlib-stream compressed when asked."""

    ws: web.WebSocketResponse
    compress: bool
    session: Session | None = None
    heartbeats: int = 0
    server_close_code: int | None = None
    _zlib: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.compress:
            self._zlib = zlib.compressobj()

    async def close(self, code: int, reason: bytes) -> None:
        """Close from the server side, remembering the code (the client's reply carries its own)."""
        if self.server_close_code is None:
            self.server_close_code = code
        await self.ws.close(code=code, message=reason)

    async def send(self, frame: JSON) -> None:
        """Send one gateway payload (quietly dropped if the socket is gone)."""
        text = json.dumps(frame, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                if self._zlib is not None:
                    # One shared zlib stream per connection; each message ends in a Z_SYNC_FLUSH marker.
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)


@dataclass(eq=False)
class Session:
    """A gateway session; it outlives its connection so that RESUME can replay what was missed."""

    id: str
    intents: int
    identify: JSON = field(repr=False)
    connection: Connection | None = None
    seq: int = 0
    backlog: deque[JSON] = field(default_factory=lambda: deque(maxlen=BACKLOG), repr=False)
    heartbeats: int = 0
    # [shard_id, num_shards] from IDENTIFY; None: one connection for every guild.
    shard: tuple[int, int] | None = None
    disconnected_at: float | None = None  # when its last socket closed (the gateway's clock)

    def has(self, intent: Intent) -> bool:
        """Whether the session asked for an intent."""
        return bool(self.intents & intent)

    def serves(self, guild_id: int | None) -> bool:
        """Whether this session's shard gets the guild's events: `(guild_id >> 22) % num_shards`, as Discord
        routes them; DMs go to shard 0 only."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (0 if guild_id is None else (guild_id >> 22) % count) == shard_id

    @property
    def connected(self) -> bool:
        """Whether a live websocket carries the session."""
        return self.connection is not None and not self.connection.ws.closed


class Gateway:
    """Serves `/gateway` websockets and fans dispatches out to identified sessions."""

    def __init__(
        self,
        world: World,
        *,
        token: Callable[[], str],
        application_flags: Callable[[], int],
        resume_url: Callable[[], str],
        allowed_privileged: Callable[[], int],
        heartbeat_interval_ms: int,
        on_change: Callable[[], None],
        resume_timeout: float = RESUME_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.world = world
        self._token = token
        self._application_flags = application_flags
        self._resume_url = resume_url
        self._allowed_privileged = allowed_privileged
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._on_change = on_change
        self.resume_timeout = resume_timeout
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        # Close codes of finished sockets: the server's when it closed first, else the client's.
        self.closes: list[int] = []

    # --- dispatch ------------------------------------------------------------------------------------------

    def live_sessions(self) -> list[Session]:
        """Sessions that are identified and not invalidated (connected or waiting to resume)."""
        self._expire()
        return list(self.sessions.values())

    def _expire(self) -> None:
        """End sessions whose socket closed longer than `resume_timeout` ago (they stop buffering)."""
        now = self.clock()
        for session in list(self.sessions.values()):
            gone = session.disconnected_at
            if session.connection is None and gone is not None and now - gone > self.resume_timeout:
                del self.sessions[session.id]

    async def dispatch(self, event: str, build: EventBuilder) -> int:
        """Send an event to every session that should see it; returns how many sessions got it."""
        sent = 0
        for session in self.live_sessions():
            data = build(session)
            if data is None or not session.serves(_guild_of(event, data)):
                continue
            await self._send_dispatch(session, event, data)
            sent += 1
        return sent

    async def _send_dispatch(self, session: Session, event: str, data: JSON) -> None:
        session.seq += 1
        frame: JSON = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        if event != "RESUMED":  # it marks the end of one replay, never part of the next
            session.backlog.append(frame)
        if session.connection is not None:
            await session.connection.send(frame)

    async def reconnect_all(self) -> None:
        """Ask every client to reconnect and resume (op 7)."""
        for conn in list(self.connections):
            await conn.send({"op": OP_RECONNECT, "d": None})

    async def drop_all(self, code: int = 4000) -> None:
        """Close every socket abruptly with a resumable code; sessions stay for RESUME."""
        for conn in list(self.connections):
            await conn.close(code, b"emulator dropped the connection")

    async def close_all(self) -> None:
        """Close every socket as the server goes away."""
        for conn in list(self.connections):
            await conn.close(WSCloseCode.GOING_AWAY, b"emulator stopping")

    # --- the websocket -------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /gateway?v=10&encoding=json[&compress=zlib-stream]."""
        encoding = request.query.get("encoding", "json")
        compress = request.query.get("compress")
        if encoding != "json":
            raise web.HTTPBadRequest(text="only encoding=json is emulated")
        if compress not in (None, "zlib-stream"):
            raise web.HTTPBadRequest(text=f"compress={compress} is not emulated (zlib-stream is)")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True, heartbeat=None)
        await ws.prepare(request)
        conn = Connection(ws, compress=compress == "zlib-stream")
        self.connections.add(conn)
        try:
            await conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await conn.close(CLOSE_DECODE_ERROR, b"Error while decoding payload.")
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await conn.close(CLOSE_DECODE_ERROR, b"Error while decoding payload.")
                    break
                await self._on_frame(conn, frame)
        finally:
            self.connections.discard(conn)
            code = conn.server_close_code or ws.close_code
            self.closes.append(code if code is not None else 0)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                session.disconnected_at = self.clock()
                # A client closing with 1000/1001 ends its session; other closes may be resumed.
                if code in (1000, 1001):
                    self.sessions.pop(session.id, None)
            self._on_change()
        return ws

    async def _on_frame(self, conn: Connection, frame: Any) -> None:
        if not isinstance(frame, dict):
            await conn.close(CLOSE_DECODE_ERROR, b"Error while decoding payload.")
            return
        op, data = frame.get("op"), frame.get("d")
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            if conn.session is not None:
                conn.session.heartbeats += 1
            await conn.send({"op": OP_ACK})
        elif op == OP_IDENTIFY:
            await self._identify(conn, data)
        elif op == OP_RESUME:
            await self._resume(conn, data)
        elif op in (OP_PRESENCE, OP_VOICE):
            if conn.session is None:
                await conn.close(CLOSE_NOT_AUTHENTICATED, b"Not authenticated.")
        elif op == OP_REQUEST_MEMBERS:
            await self._request_members(conn, data)
        else:
            await conn.close(CLOSE_UNKNOWN_OPCODE, b"Unknown opcode.")

    async def _identify(self, conn: Connection, data: Any) -> None:
        if conn.session is not None:
            await conn.close(CLOSE_ALREADY_AUTHENTICATED, b"Already authenticated.")
            return
        if not isinstance(data, dict) or data.get("token") != self._token():
            await conn.close(CLOSE_AUTH_FAILED, b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            await conn.close(CLOSE_INVALID_INTENTS, b"Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self._allowed_privileged():
            await conn.close(CLOSE_DISALLOWED_INTENTS, b"Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None:
            valid = isinstance(shard, list) and len(shard) == 2 and all(isinstance(n, int) for n in shard)
            if not valid or not 0 <= shard[0] < shard[1]:
                await conn.close(CLOSE_INVALID_SHARD, b"Invalid shard.")
                return
        session = Session(id=secrets.token_hex(16), intents=intents, identify=_redacted(data))
        session.shard = (shard[0], shard[1]) if shard is not None else None
        session.heartbeats = conn.heartbeats  # discord.py beats once right after HELLO, before IDENTIFY
        session.connection = conn
        conn.session = session
        self.sessions[session.id] = session
        world = self.world
        ready: JSON = {
            "v": 10,
            "user": world.bot.payload() | {"verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in world.guilds if session.serves(gid)],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._resume_url(),
            "application": {"id": str(world.bot.id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if shard is not None:
            ready["shard"] = shard
        await self._send_dispatch(session, "READY", ready)
        with_members = session.has(Intent.GUILD_MEMBERS)
        for guild in [g for g in world.guilds.values() if session.serves(g.id)]:
            await self._send_dispatch(
                session, "GUILD_CREATE", world.guild_payload(guild, with_members=with_members)
            )
        self._on_change()

    async def _resume(self, conn: Connection, data: Any) -> None:
        self._expire()
        session = self.sessions.get(data.get("session_id", "")) if isinstance(data, dict) else None
        if session is None or not isinstance(data, dict) or data.get("token") != self._token():
            await conn.send({"op": OP_INVALID_SESSION, "d": False})
            return
        seen = data.get("seq") or 0
        if not isinstance(seen, int) or seen > session.seq:
            await conn.close(CLOSE_INVALID_SEQ, b"Invalid seq.")
            return
        kept_from = session.backlog[0]["s"] if session.backlog else session.seq + 1
        if seen < kept_from - 1:
            # Dispatches after `seen` are no longer kept: a resume would skip them, so the session ends.
            if session.connection is None:
                del self.sessions[session.id]
            await conn.send({"op": OP_INVALID_SESSION, "d": False})
            return
        old = session.connection
        if old is not None and old is not conn:
            old.session = None
            await old.close(4000, b"Session resumed elsewhere.")
        session.connection = conn
        session.disconnected_at = None
        conn.session = session
        for frame in list(session.backlog):
            if frame["s"] > seen:
                await conn.send(frame)
        await self._send_dispatch(session, "RESUMED", {})
        self._on_change()

    async def _request_members(self, conn: Connection, data: Any) -> None:
        session = conn.session
        if session is None:
            await conn.close(CLOSE_NOT_AUTHENTICATED, b"Not authenticated.")
            return
        guild = self.world.guilds.get(int(data.get("guild_id", 0))) if isinstance(data, dict) else None
        if guild is None:
            return
        members = [m.payload() for m in guild.members.values()]
        wanted = data.get("user_ids")
        if wanted:
            ids = {int(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if int(m["user"]["id"]) in ids]
        elif data.get("query"):
            prefix = str(data["query"]).lower()
            members = [m for m in members if m["user"]["username"].lower().startswith(prefix)]
        if data.get("limit"):
            members = members[: int(data["limit"])]
        chunk: JSON = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)


def _guild_of(event: str, data: JSON) -> int | None:
    """The guild an event belongs to (None: a DM or no guild), which decides its shard."""
    if event.startswith("GUILD_") and "guild_id" not in data:
        guild_id = data.get("id")  # GUILD_CREATE / GUILD_UPDATE carry the guild itself
    else:
        guild_id = data.get("guild_id")
    return int(guild_id) if guild_id is not None else None


def _redacted(identify: JSON) -> JSON:
    """The IDENTIFY payload without its token, for inspection."""
    return {k: v for k, v in identify.items() if k != "token"}
