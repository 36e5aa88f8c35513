"""The API's one authorization function: bearer token, off when unset, constant-time compare."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ivr.web.auth import bearer_token


def request(authorization: str | None) -> web.Request:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_mocked_request("GET", "/api/customers/x/timeline", headers=headers)


async def test_the_right_token_passes() -> None:
    assert await bearer_token("t0ken")(request("Bearer t0ken")) == "api-token"
    assert await bearer_token("t0ken")(request("bearer  t0ken ")) == "api-token"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic t0ken", "Bearer t0ke", "Bearer t0ken2", "t0ken"]
)
async def test_anything_else_is_401(header: str | None) -> None:
    with pytest.raises(web.HTTPUnauthorized) as refused:
        await bearer_token("t0ken")(request(header))
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"


async def test_no_configured_token_means_the_api_is_off_not_open() -> None:
    for header in (None, "Bearer ", "Bearer anything"):
        with pytest.raises(web.HTTPServiceUnavailable) as off:
            await bearer_token("")(request(header))
        assert off.value.text == '{"error": "API disabled: set IVR_API_TOKEN"}'
