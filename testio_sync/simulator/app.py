"""The ASGI app: contract routes under ``/customer/v2`` and control routes under ``/_simulator``.

Every contract request goes through one wrapper that applies, in order, the
rate limit (429), edge errors (502/503/504), the token check (401), the
endpoint itself (with its own 4xx/500/524), mangling of malformed answers, the
request count and finally the delay. The delay is an ``asyncio.sleep`` so slow
answers never hold up other requests. Control routes skip all of that.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from testio_sync.simulator.endpoints import ApiProblem
from testio_sync.simulator.faults import Decision, retry_after_header

if TYPE_CHECKING:
    import threading
    from datetime import datetime

    from testio_sync.simulator.endpoints import ContractApi
    from testio_sync.simulator.faults import FaultConfig, FaultState
    from testio_sync.simulator.stats import RequestStats


class Simulator(Protocol):
    """What the app needs of the simulator it serves (the app never imports the model)."""

    token: str
    lock: threading.RLock
    api: ContractApi
    stats_counter: RequestStats
    fault_state: FaultState

    def now(self) -> datetime: ...
    def advance(self, hours: float) -> dict[str, Any]: ...
    def update_faults(self, **changes: Any) -> FaultConfig: ...
    def clear_faults(self) -> FaultConfig: ...
    def describe_faults(self) -> dict[str, Any]: ...
    def truth(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def reset_stats(self) -> None: ...


API_PREFIX = "/customer/v2"
CONTROL_PREFIX = "/_simulator"
JSON_TYPE = "application/json"
BAD_BODY = "the body must be a JSON object"
# Edge answers (gateway errors, Cloudflare's 524) come as HTML, not as API JSON.
EDGE_STATUSES = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

Produce = Callable[[Request, Decision], bytes]
Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type=JSON_TYPE)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"status": status, "error": message}).encode()
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def edge_response(status: int, title: str) -> Response:
    html = f"<html><head><title>{status} {title}</title></head><body>{title}</body></html>"
    return Response(html, status_code=status, media_type="text/html")


def mangle(body: bytes, how: str) -> bytes:
    """A 200 body a client must refuse: cut-off JSON, or JSON without the envelope key."""
    if how == "not_json":
        return body[: max(1, len(body) // 2)]
    return b'{"data":' + body + b"}"


def build_app(sim: Simulator) -> Starlette:
    """The app for ``sim``; several servers may share it."""
    api = sim.api

    def faulty(name: str, produce: Produce) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            decision = sim.fault_state.decide()
            response = _answer(sim, request, decision, produce)
            carried = ("hang",) if decision.hung else ()
            if decision.malformed and response.status_code == 200:
                carried += ("malformed",)
            sim.stats_counter.record(name, response.status_code, faults=carried)
            if decision.delay_s > 0:
                await asyncio.sleep(decision.delay_s)
            return response

        return endpoint

    def route(path: str, name: str, produce: Produce) -> Route:
        return Route(API_PREFIX + path, faulty(name, produce), methods=["GET"], name=name)

    def pid(request: Request) -> int:
        return request.path_params["pid"]

    routes = [
        route(
            "/products",
            "products",
            lambda r, d: _empty_or(d.config.empty_product_list, "products", api.products),
        ),
        route("/products/{pid:int}", "product", lambda r, d: api.product(pid(r))),
        route("/products/{pid:int}/features", "features", lambda r, d: api.features(pid(r))),
        route(
            "/products/{pid:int}/sections/{sid:int}/features",
            "section_features",
            lambda r, d: api.section_features(pid(r), r.path_params["sid"]),
        ),
        route(
            "/products/{pid:int}/user_stories",
            "user_stories",
            lambda r, d: api.user_stories(pid(r), r.query_params),
        ),
        route(
            "/products/{pid:int}/exploratory_tests",
            "exploratory_tests",
            lambda r, d: _empty_or(
                d.config.empty_test_pages,
                "exploratory_tests",
                lambda: api.exploratory_tests(
                    pid(r), r.query_params, d.broken_ids, d.config.failing_product_ids
                ),
            ),
        ),
        route(
            "/exploratory_tests/{tid:int}",
            "exploratory_test",
            lambda r, d: api.exploratory_test(r.path_params["tid"], d.broken_ids),
        ),
        route(
            "/bugs",
            "bugs",
            lambda r, d: api.bugs(r.query_params, d.config.bug_batch_limit),
        ),
        route("/bugs/reject_reasons", "reject_reasons", lambda r, d: api.reject_reasons()),
        route("/bugs/{bid:int}", "bug", lambda r, d: api.bug(r.path_params["bid"])),
        route("/{rest:path}", "unknown", _not_found),
        *control_routes(sim),
    ]
    return Starlette(routes=routes)


def _empty_or(empty: bool, key: str, produce: Callable[[], bytes]) -> bytes:
    """An API glitch seen in production: a 200 whose list is empty, whatever is stored."""
    return b'{"' + key.encode() + b'":[]}' if empty else produce()


def _not_found(request: Request, decision: Decision) -> bytes:
    raise ApiProblem(404, f"no such endpoint: {request.url.path}")


def _answer(sim: Simulator, request: Request, decision: Decision, produce: Produce) -> Response:
    config = decision.config
    if decision.retry_after_s is not None:
        retry_after = retry_after_header(decision.retry_after_s, config.retry_after_http_date)
        return error_response(429, "rate limit exceeded", {"Retry-After": retry_after})
    if decision.error_status is not None:
        return edge_response(decision.error_status, EDGE_STATUSES[decision.error_status])
    expected = f"Token {sim.token}"
    if config.token_revoked or request.headers.get("authorization") != expected:
        return error_response(401, "invalid or missing token", {"WWW-Authenticate": "Token"})
    try:
        with sim.lock:
            body = produce(request, decision)
    except ApiProblem as problem:
        if problem.status == 524:
            return edge_response(524, "A timeout occurred")
        return error_response(problem.status, problem.message)
    if decision.malformed:
        body = mangle(body, decision.malformed)
    return Response(body, media_type=JSON_TYPE)


def control_routes(sim: Simulator) -> list[Route]:
    """``/_simulator/*``: ground truth, clock, faults and stats; no auth, faults or latency."""

    async def truth(request: Request) -> Response:
        return json_response(sim.truth())

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "now": sim.now.isoformat()})

    async def advance(request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return error_response(400, BAD_BODY)
        hours = body.get("hours")
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            return error_response(400, "hours must be a number")
        try:
            return json_response(sim.advance(hours))
        except ValueError as exc:
            return error_response(400, str(exc))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            changes = await _json_object(request)
            if changes is None:
                return error_response(400, BAD_BODY)
            try:
                sim.update_faults(**changes)
            except ValueError as exc:
                return error_response(400, str(exc))
        elif request.method == "DELETE":
            sim.clear_faults()
        return json_response(sim.describe_faults())

    async def stats(request: Request) -> Response:
        return json_response(sim.stats())

    async def reset_stats(request: Request) -> Response:
        sim.reset_stats()
        return json_response(sim.stats())

    return [
        Route(CONTROL_PREFIX + "/health", health, methods=["GET"]),
        Route(CONTROL_PREFIX + "/truth", truth, methods=["GET"]),
        Route(CONTROL_PREFIX + "/advance", advance, methods=["POST"]),
        Route(CONTROL_PREFIX + "/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(CONTROL_PREFIX + "/stats", stats, methods=["GET"]),
        Route(CONTROL_PREFIX + "/stats/reset", reset_stats, methods=["POST"]),
    ]


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object (empty counts as ``{}``); None when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
