"""The one fault mechanism: matching and counting, and the same `/_control/faults` on every emulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.base import Emulator
from sandbox.faults import STATUSES, Fault, FaultPlan, Target
from sandbox.runner import all_emulators
from sandbox.telegram import TelegramEmulator

KINDS = {"truncated": "the stream breaks off"}


def plan(statuses: str | None = "an error") -> FaultPlan:
    return FaultPlan(KINDS, statuses=statuses)


@pytest.mark.parametrize(
    ("matcher", "target", "hit"),
    [
        ({}, Target(), True),
        ({"method": "post"}, Target("POST", ("/x",)), True),
        ({"method": "sendVideo"}, Target("sendvideo"), True),
        ({"method": "GET"}, Target("POST", ("/x",)), False),
        ({"path": "/apis/tt/post*"}, Target("GET", ("/apis/tt/post/info",)), True),
        ({"path": "/apis/tt/post*"}, Target("GET", ("/apis/tt/user/info",)), False),
        ({"path": "/apis/tt/post"}, Target("GET", ("/apis/tt/post/info",)), False),  # a pattern, not a prefix
        ({"path": "/channels/{channel_id}/messages"}, Target("POST", ("/channels/5/messages", "/x")), False),
        ({"path": "/c/{id}"}, Target("POST", ("/c/5", "/c/{id}")), True),  # any of the request's names
        ({"path": "/x"}, Target("sendMessage"), False),  # no path to match
        ({"host": "*.tiktokcdn.com"}, Target("GET", ("/",), "p16-sign-va.tiktokcdn.com"), True),
        ({"host": "www.tiktok.com"}, Target("GET", ("/",), "vm.tiktok.com"), False),
        ({"chat_id": 5}, Target("sendMessage", chat_id=5), True),
        ({"chat_id": 5}, Target("sendMessage", chat_id=6), False),
        ({"method": "POST", "path": "/a"}, Target("POST", ("/b",)), False),  # every field set must match
    ],
)
def test_matcher(matcher: dict[str, Any], target: Target, hit: bool) -> None:
    fault = Fault("500", **matcher)
    assert fault.matches(target) is hit


def test_count_and_order() -> None:
    faults = plan()
    faults.add(Fault("500", 2, path="/a"))
    faults.add(Fault("503"))
    first = faults.take(Target("GET", ("/b",)))
    assert first is not None and first.kind == "503"  # the first that matches, not the first queued
    taken = [faults.take(Target("GET", ("/a",))) for _ in range(3)]
    assert [f.kind if f else None for f in taken] == ["500", "500", None]
    assert len(faults) == 0


def test_kinds_restrict_what_a_request_can_suffer() -> None:
    faults = plan()
    faults.add(Fault("truncated"))
    assert faults.take(Target(), kinds=["500"]) is None
    assert faults.queued[0].count == 1
    assert faults.take(Target(), kinds=["truncated"]) is not None


@pytest.mark.parametrize("kind", ["teapot", "200", "600", "slow"])
def test_unknown_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        plan().add(Fault(kind))


def test_statuses_only_where_the_emulator_takes_them() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        plan(statuses=None).add(Fault("500"))
    assert plan().add(Fault(" 429 ")).kind == "429"
    assert STATUSES in plan().kinds and STATUSES not in plan(statuses=None).kinds


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="count"):
        plan().add(Fault("500", 0))


def test_json_round_trip() -> None:
    body = {"kind": "429", "count": 3, "method": "POST", "path": "/c/*", "retry_after": 1.5, "global": True}
    assert Fault.from_json(body).json() == body
    assert Fault.from_json({"kind": 500, "chat_id": "-100"}).chat_id == -100
    assert Fault.from_json({"kind": 500, "chat_id": "@channel"}).chat_id == "@channel"
    for bad in ({"count": 1}, {"kind": "500", "times": 2}, {"kind": "500", "count": "x"}, ["500"]):
        with pytest.raises(ValueError, match=r"kind is required|field|JSON object"):
            Fault.from_json(bad)


def test_telegram_refuses_flood_waits_it_never_sends() -> None:
    emu = TelegramEmulator()
    for wait in (0, 0.5, 1.5):
        with pytest.raises(ValueError, match="retry_after"):
            emu.fault_next("429", retry_after=wait)
    emu.fault_next("429", retry_after=1)


@pytest.mark.parametrize("emu", all_emulators(), ids=lambda e: e.name)
async def test_every_emulator_has_the_same_control(emu: Emulator) -> None:
    async with emu, httpx.AsyncClient(base_url=emu.base_url + "/_control") as control:
        kinds = (await control.get("/faults")).json()["kinds"]
        kind = next(iter(kinds)) if STATUSES not in kinds else "503"
        body = {"kind": kind, "count": 2, "path": "/nowhere"}
        queued = await control.post("/faults", json=body)
        assert (queued.status_code, queued.json()) == (200, {"queued": [body]})
        assert emu.faults.queued[0] == Fault(kind, 2, path="/nowhere")
        listed = (await control.get("/faults")).json()
        assert listed == {"queued": [body], "kinds": kinds}
        bad = await control.post("/faults", json={"kind": "no-such-kind"})
        assert (
            bad.status_code == 400 and bad.json()["kinds"] == kinds and "unknown fault" in bad.json()["error"]
        )
        assert (await control.delete("/faults")).json() == {"queued": []}
        assert len(emu.faults) == 0
        requests = (await control.get("/requests")).json()["requests"]
        assert requests == []  # the control API's own requests are left out
