"""The EnsembleData and Research API emulators speak their protocols: envelopes, errors, headers, controls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.catalogue import T0, post_id_at
from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from sandbox.runner import Sandbox, all_emulators

CLIP = post_id_at(T0, 1)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


# --- EnsembleData ---


async def ed_get(
    http: httpx.AsyncClient, emu: EnsembleDataEmulator, path: str, **params: str
) -> httpx.Response:
    return await http.get(emu.base_url + "/apis" + path, params=params)


async def test_ed_success_envelope_and_units_header(
    http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator
) -> None:
    response = await ed_get(http, ed_emu, "/tt/user/info", token=ed_emu.token, username="sandbox.cook")
    assert response.status_code == 200 and response.headers["units_charged"] == "1"
    body = response.json()
    assert set(body) == {"data"} and body["data"]["user"]["uniqueId"] == "sandbox.cook"
    response = await ed_get(
        http, ed_emu, "/tt/user/posts", token=ed_emu.token, username="sandbox.cook", depth="2"
    )
    body = response.json()
    assert set(body) == {"data", "nextCursor"} and len(body["data"]) == 20  # user posts: top-level cursor
    assert response.headers["units_charged"] == "2"


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/tt/user/info", {}, 422),  # no token at all
        ("/tt/user/info", {"token": "xxx", "username": "a"}, 491),
        ("/tt/user/info", {"token": "T"}, 422),
        ("/tt/user/posts", {"token": "T", "username": "sandbox.cook"}, 422),  # depth is required
        ("/tt/user/posts", {"token": "T", "username": "sandbox.cook", "depth": "x"}, 422),
        ("/tt/hashtag/posts", {"token": "T"}, 422),
        ("/tt/post/info", {"token": "T", "url": "https://vm.tiktok.com/ZMclip01/"}, 462),
        ("/tt/post/multi-info", {"token": "T", "ids": ";".join(str(i) for i in range(101))}, 464),
        ("/tt/user/info", {"token": "T", "username": "nobody.here"}, 473),
        ("/tt/user/posts", {"token": "T", "username": "secret.agent", "depth": "1"}, 472),
    ],
)
async def test_ed_errors(
    http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator, path: str, params: dict[str, str], status: int
) -> None:
    if params.get("token") == "T":
        params = {**params, "token": ed_emu.token}
    response = await ed_get(http, ed_emu, path, **params)
    assert response.status_code == status
    body = response.json()
    assert "data" not in body and body["detail"]
    assert response.headers["units_charged"] == "0"
    if status == 422:
        assert isinstance(body["detail"], list) and body["detail"][0]["loc"][0] == "query"


async def test_ed_units_balance_runs_out(http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator) -> None:
    ed_emu.units_balance = 1
    ok = await ed_get(http, ed_emu, "/tt/hashtag/posts", token=ed_emu.token, name="food")
    assert ok.status_code == 200 and ed_emu.units_balance == 0
    spent = await ed_get(http, ed_emu, "/tt/hashtag/posts", token=ed_emu.token, name="food")
    assert spent.status_code == 495 and "detail" in spent.json()


async def test_ed_http_controls(http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator) -> None:
    planned = await http.post(ed_emu.base_url + "/_control/faults", json={"kind": "500", "count": 2})
    assert planned.json() == {"queued": [{"kind": "500", "count": 2}]}
    for _ in range(2):
        response = await ed_get(http, ed_emu, "/tt/user/info", token=ed_emu.token, username="sandbox.cook")
        assert response.status_code == 500 and response.json() == {"detail": "Internal server error"}
    assert (await ed_get(http, ed_emu, "/tt/user/info", token=ed_emu.token, username="x")).status_code == 473
    state = await http.post(ed_emu.base_url + "/_control/state", json={"units_balance": 0})
    assert state.json()["units_balance"] == 0 and ed_emu.units_balance == 0
    assert (
        await ed_get(http, ed_emu, "/tt/hashtag/posts", token=ed_emu.token, name="food")
    ).status_code == 495
    bad = await http.post(ed_emu.base_url + "/_control/faults", json={"kind": "teapot"})
    assert bad.status_code == 400
    await http.post(
        ed_emu.base_url + "/_control/faults", json={"kind": 429, "count": 5, "path": "/apis/tt/post*"}
    )
    assert (await ed_get(http, ed_emu, "/tt/user/info", token=ed_emu.token, username="x")).status_code == 473
    cleared = await http.delete(ed_emu.base_url + "/_control/faults")
    assert cleared.json() == {"queued": []}


def test_fault_plan_validates_kinds() -> None:
    emu = EnsembleDataEmulator()
    for kind in ("429", 500, "503", "slow", "reset"):
        emu.fault_next(kind)
    for kind in ("200", "teapot", "600"):
        with pytest.raises(ValueError, match="unknown fault"):
            emu.fault_next(kind)


# --- Research API ---


async def token_for(http: httpx.AsyncClient, emu: ResearchEmulator) -> str:
    response = await http.post(
        emu.base_url + "/v2/oauth/token/",
        data={
            "client_key": emu.client_key,
            "client_secret": emu.client_secret,
            "grant_type": "client_credentials",
        },
    )
    body = response.json()
    assert (
        response.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == emu.token_ttl
    )
    token: str = body["access_token"]
    return token


async def research_post(
    http: httpx.AsyncClient, emu: ResearchEmulator, path: str, fields: str, body: object, token: str
) -> httpx.Response:
    return await http.post(
        emu.base_url + path,
        params={"fields": fields},
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_research_token_errors(http: httpx.AsyncClient, research_emu: ResearchEmulator) -> None:
    url = research_emu.base_url + "/v2/oauth/token/"
    wrong = await http.post(
        url, data={"client_key": "k", "client_secret": "s", "grant_type": "client_credentials"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    grant = await http.post(
        url,
        data={
            "client_key": research_emu.client_key,
            "client_secret": research_emu.client_secret,
            "grant_type": "password",
        },
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


async def test_research_envelope(http: httpx.AsyncClient, research_emu: ResearchEmulator) -> None:
    token = await token_for(http, research_emu)
    response = await research_post(
        http,
        research_emu,
        "/v2/research/user/info/",
        "display_name,follower_count",
        {"username": "sandbox.cook"},
        token,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["data"] == {
        "display_name": "Sandbox Cook",
        "follower_count": 1_234_567,
    }  # only what was asked
    assert body["error"]["code"] == "ok" and body["error"]["log_id"]


@pytest.mark.parametrize(
    ("path", "fields", "body", "status", "code", "words"),
    [
        ("/v2/research/user/info/", "nope", {"username": "sandbox.cook"}, 400, "invalid_params", "fields"),
        ("/v2/research/user/info/", "", {"username": "sandbox.cook"}, 400, "invalid_params", "fields"),
        (
            "/v2/research/user/info/",
            "display_name",
            {"username": "zzz"},
            400,
            "invalid_params",
            "cannot find the user",
        ),
        (
            "/v2/research/user/info/",
            "display_name",
            {"username": "secret.agent"},
            400,
            "invalid_params",
            "cannot return",
        ),
        (
            "/v2/research/user/info/",
            "display_name",
            {"username": "sandbox.cook", "open_id": "x"},
            400,
            "invalid_params",
            "not both",
        ),
        (
            "/v2/research/video/query/",
            "id",
            {
                "query": {"and": [{"operation": "EQ", "field_name": "username", "field_values": ["a"]}]},
                "start_date": "20240101",
                "end_date": "20240201",
            },
            400,
            "invalid_params",
            "30 days",
        ),
        (
            "/v2/research/video/query/",
            "id",
            {
                "query": {"and": [{"operation": "EQ", "field_name": "username", "field_values": ["a"]}]},
                "start_date": "20240101",
                "end_date": "20240102",
                "max_count": 101,
            },
            400,
            "invalid_params",
            "max_count",
        ),
        (
            "/v2/research/video/query/",
            "id",
            {"query": {}, "start_date": "20240101", "end_date": "20240102"},
            400,
            "invalid_params",
            "condition",
        ),
        (
            "/v2/research/video/query/",
            "id",
            {
                "query": {"and": [{"operation": "LIKE", "field_name": "username", "field_values": ["a"]}]},
                "start_date": "20240101",
                "end_date": "20240102",
            },
            400,
            "invalid_params",
            "operation",
        ),
        (
            "/v2/research/video/query/",
            "id",
            {
                "query": {"and": [{"operation": "EQ", "field_name": "username", "field_values": ["a"]}]},
                "start_date": "2024-01-01",
                "end_date": "20240102",
            },
            400,
            "invalid_params",
            "YYYYMMDD",
        ),
        (
            "/v2/research/video/comment/list/",
            "id",
            {"video_id": 1},
            400,
            "invalid_params",
            "cannot find the video",
        ),
        (
            "/v2/research/video/comment/list/",
            "id",
            {"video_id": int(CLIP), "max_count": 0},
            400,
            "invalid_params",
            "max_count",
        ),
    ],
)
async def test_research_errors(
    http: httpx.AsyncClient,
    research_emu: ResearchEmulator,
    path: str,
    fields: str,
    body: object,
    status: int,
    code: str,
    words: str,
) -> None:
    token = await token_for(http, research_emu)
    response = await research_post(http, research_emu, path, fields, body, token)
    assert response.status_code == status
    payload = response.json()
    assert payload["error"]["code"] == code and words in payload["error"]["message"]
    assert "data" in payload


async def test_research_401_quota_and_controls(
    http: httpx.AsyncClient, research_emu: ResearchEmulator
) -> None:
    path, fields, body = "/v2/research/user/info/", "display_name", {"username": "sandbox.cook"}
    missing = await research_post(http, research_emu, path, fields, body, "nope")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "access_token_invalid"
    token = await token_for(http, research_emu)
    await http.post(research_emu.base_url + "/_control/state", json={"expire_tokens": True})
    assert (await research_post(http, research_emu, path, fields, body, token)).status_code == 401
    token = await token_for(http, research_emu)
    state = await http.post(
        research_emu.base_url + "/_control/state", json={"daily_quota": 1, "token_ttl": 60}
    )
    assert state.json()["daily_quota"] == 1 and research_emu.token_ttl == 60
    assert (await research_post(http, research_emu, path, fields, body, token)).status_code == 200
    spent = await research_post(http, research_emu, path, fields, body, token)
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "rate_limit_exceeded"
    await http.post(research_emu.base_url + "/_control/state", json={"daily_quota": 100, "requests_today": 0})
    await http.post(research_emu.base_url + "/_control/faults", json={"kind": "500"})
    failed = await research_post(http, research_emu, path, fields, body, token)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error"
    assert (await research_post(http, research_emu, path, fields, body, token)).status_code == 200


async def test_research_expiry_follows_token_ttl(http: httpx.AsyncClient) -> None:
    clock = [0.0]
    emu = ResearchEmulator(token_ttl=10, clock=lambda: clock[0])
    await emu.start()
    try:
        token = await token_for(http, emu)
        path, fields, body = "/v2/research/user/info/", "display_name", {"username": "sandbox.cook"}
        clock[0] = 9.9
        assert (await research_post(http, emu, path, fields, body, token)).status_code == 200
        clock[0] = 10.0
        assert (await research_post(http, emu, path, fields, body, token)).status_code == 401
    finally:
        await emu.stop()


# --- the sandbox ---


async def test_both_are_in_the_sandbox_with_their_environment() -> None:
    kinds = {type(e) for e in all_emulators()}
    assert {EnsembleDataEmulator, ResearchEmulator} <= kinds
    sandbox = Sandbox([EnsembleDataEmulator(), ResearchEmulator()])
    await sandbox.start()
    try:
        env = sandbox.env()
        ed = sandbox.get(EnsembleDataEmulator)
        research = sandbox.get(ResearchEmulator)
        assert env["ENSEMBLEDATA__URL"] == f"{ed.base_url}/apis"
        assert env["ENSEMBLEDATA__TOKEN"] == ed.token
        assert env["RESEARCH__URL"] == research.base_url
        assert env["RESEARCH__CLIENT_KEY"] == research.client_key
        assert env["RESEARCH__CLIENT_SECRET"] == research.client_secret
    finally:
        await sandbox.stop()
