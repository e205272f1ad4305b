"""The MCP server: slim tools (sync, report, search, views, metrics), two prompts, two resources.

Tools validate, call one library function (``mcp_tools``, ``report``,
``SyncService``) and return compact JSON with the same dict as structured
content. ``TestioSyncError`` becomes a one-line ``ToolError`` naming a next
step; nothing else about a failure (no traceback, no token) reaches the client.
``run_server`` starts a worker when none is alive, so one command gives a
working server; that worker stops by itself once idle and no server uses it.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from filelock import Timeout
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from testio_sync.errors import (
    ApiError,
    AuthError,
    ConfigError,
    StoreError,
    SyncError,
    SyncLockedError,
    TestioSyncError,
    UsageError,
)
from testio_sync.insights import report, views
from testio_sync.insights import search as full_text
from testio_sync.insights.analytics import MetricsQuery, run_query
from testio_sync.insights.answer_cache import AnswerCache
from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.metrics_registry import registry
from testio_sync.mcp_server import prompts
from testio_sync.mcp_server import tools as mcp_tools
from testio_sync.mcp_server.http_auth import HttpAccess, http_access
from testio_sync.mcp_server.read_through import ReadThrough, with_warnings
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.store.queries import STATUS_BUCKETS
from testio_sync.sync.lock import EntityLocks
from testio_sync.sync.types import SyncTrigger
from testio_sync.tasks.consumer import spawn_worker
from testio_sync.tasks.liveness import worker_alive
from testio_sync.tasks.users import register_user, start_guard, unregister_user

logger = logging.getLogger("testio_sync.mcp")

SERVER_NAME = "testio-sync"
INSTRUCTIONS = (
    "TestIO data from a local mirror. Read tools answer from the mirror, refetching "
    "stale rows first (see data_as_of); sync_data refreshes it all."
)

READ_ONLY = ToolAnnotations(read_only_hint=True)
SYNC = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)

TestStatus = Literal[
    "initialized", "waiting", "running", "locked", "customer_finalized", "archived", "cancelled"
]
BugStatus = Literal[STATUS_BUCKETS]  # type: ignore[valid-type]  # one definition of buckets
BugSeverity = Literal["low", "high", "critical", "visual", "content", "custom"]
Ids = list[int]
Limit = Annotated[int, Field(ge=1, le=100)]
Offset = Annotated[int, Field(ge=0)]
Day = Annotated[str | None, Field(description="YYYY-MM-DD or e.g. '30 days ago'")]
Entity = Literal["product", "feature", "test", "bug"]
METRICS_URI = "testio://metrics"


# -- errors ------------------------------------------------------------------------------


def next_step(exc: TestioSyncError) -> str:
    """What the caller can do about an error, by the kind of error."""
    if isinstance(exc, AuthError):
        return "Set a valid TESTIO_CUSTOMER_API_TOKEN for the server and restart it."
    if isinstance(exc, ConfigError):
        return "Fix the server's environment settings and restart it."
    if isinstance(exc, ApiError):
        return "The TestIO API failed; retry later (get_sync_status shows data freshness)."
    if isinstance(exc, SyncLockedError):
        return "Another sync holds the lock; call get_sync_status, then retry."
    if isinstance(exc, SyncError):
        return "Call get_sync_status for details."
    if isinstance(exc, StoreError):
        if "testio-sync restore" in str(exc):  # a damaged file: the reason says what rebuilds
            return ""
        return (
            "Check the server's data directory (TESTIO_SYNC_HOME); sync_data refreshes data but "
            "does not rebuild a damaged database (`testio-sync restore` does)."
        )
    return ""


def one_line(text: str, secret: str | None = None) -> str:
    """Collapse whitespace to one line and mask the token should it ever appear."""
    if secret:
        text = text.replace(secret, "***")
    return " ".join(text.split())


# What helps with a UsageError, in tool terms (the CLI has its own).
USAGE_HINTS = {
    "products": "list_products shows the mirrored products, sync_data fetches them",
    "tests": "list_tests shows the tests of a product",
    "test": "list_tests shows the mirrored tests, sync_data fetches new ones",
}


@contextmanager
def tool_errors(settings: Settings) -> Iterator[None]:
    """Turn the package's errors into a ToolError with a one-line reason and a next step."""
    try:
        yield
    except TestioSyncError as exc:
        if isinstance(exc, UsageError):
            reason, step = exc.worded(str, USAGE_HINTS), ""
        else:
            reason, step = str(exc).rstrip("."), next_step(exc)
        secret = settings.api_token.reveal() if settings.api_token else None
        raise ToolError(one_line(f"{reason}. {step}".strip(), secret)) from None


def validation_reason(exc: ValidationError) -> str:
    """The first argument problem, on one line (pydantic's own text spans several)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"Invalid argument {where}: {first['msg']}{more}.")


class TestioMCPServer(MCPServer):
    """An MCPServer whose argument errors read as one line."""

    __test__ = False

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(
                    f"Error executing tool {name}: {validation_reason(cause)}"
                ) from cause
            raise


# -- schema slimming ---------------------------------------------------------------------


def strip_titles(schema: Any) -> Any:
    """The schema without pydantic's generated ``title`` keys (half a small tool's size).

    Only string values are titles: a property named ``title`` maps to a schema dict.
    """
    if isinstance(schema, dict):
        return {
            key: strip_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [strip_titles(item) for item in schema]
    return schema


def slim_tool(fn: Any, annotations: ToolAnnotations) -> Tool:
    """A tool with no output schema and no titles in its input schema."""
    description = " ".join((inspect.getdoc(fn) or "").split())  # indentation costs tokens
    tool = Tool.from_function(
        fn, description=description, annotations=annotations, structured_output=False
    )
    tool.parameters = strip_titles(tool.parameters)
    return tool


def answer(data: dict[str, Any]) -> CallToolResult:
    """Compact JSON text for the model and the same dict as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=mcp_tools.dumps(data))], structured_content=data
    )


# -- worker ------------------------------------------------------------------------------


class WorkerKeeper:
    """Shares one worker among all servers of a data directory, and never stops it.

    Each server registers as a user of the worker (``testio_sync.tasks.users``); the worker a
    server starts is attended: it stops by itself once it is idle and no server
    is left, so one server's exit neither cuts a running sync nor leaves the
    other servers without a worker.
    """

    def __init__(self, settings: Settings, *, enabled: bool = True) -> None:
        self.settings = settings
        self.enabled = enabled
        self.process: subprocess.Popen[bytes] | None = None
        self._entry: Path | None = None
        self._guard = threading.Lock()

    def ensure(self) -> bool:
        """Make sure a worker is alive; True when this call started one."""
        if not self.enabled:
            return False
        with self._guard:
            try:
                # Under the start guard: a worker deciding to stop for lack of users
                # either sees this server registered or is already not alive.
                with start_guard(self.settings):
                    if self._entry is None:
                        self._entry = register_user(self.settings)
                    if worker_alive(self.settings.worker_lock_path):
                        return False
                    logger.info("no worker alive: starting one")
                    self.process = spawn_worker(self.settings, attended=True)
                    return True
            except (RuntimeError, OSError, Timeout, TestioSyncError) as exc:
                # Syncs still run, in this process: a missing worker must not stop the server.
                logger.warning("could not start a worker: %s", exc)
                return False

    def stop(self) -> None:
        """Stop using the worker; it finishes its run and stops once no server is left.

        Takes no lock: a signal handler calls it, maybe while ``ensure`` holds the guard.
        """
        entry, self._entry = self._entry, None
        if entry is not None:
            unregister_user(entry)
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            # It stops by itself once idle and unused: reap it then, without waiting here.
            threading.Thread(target=proc.wait, name="reap-worker", daemon=True).start()


# -- the server --------------------------------------------------------------------------


def build_server(
    settings: Settings, *, worker: WorkerKeeper | None = None, access: HttpAccess | None = None
) -> MCPServer:
    """The MCP server with its tools; ``worker`` (if given) is kept alive for syncs.

    ``access`` with a verifier makes every HTTP request prove a bearer token.
    """
    service = SyncService(settings)
    locks = EntityLocks()
    reads = ReadThrough(settings, locks=locks)
    metrics_answers = AnswerCache()  # query_metrics answers, until the data changes
    pages = AnswerCache()  # list pages: read again only once the data changed

    def kept_page(read: Callable[..., dict[str, Any]], *args: Any) -> Callable[[], Any]:
        """``read(*args)`` as a call answered from ``pages`` while the data stays the same."""
        question = (read.__name__, json.dumps(args, default=str))
        return lambda: pages.answer(question, lambda: read(*args))

    async def sync_data(
        ctx: Context,
        product_ids: Ids | None = None,
        since: Day = None,
        force: bool = False,
        with_bugs: bool = False,
    ) -> CallToolResult:
        """Refresh the mirror from TestIO (products, features, new tests; with_bugs: their stale
        bugs too); returns the completed phases and counts."""
        with tool_errors(settings):
            phases, scope, options = mcp_tools.sync_request_parts(
                product_ids, since, force, with_bugs
            )
            if worker is not None:
                await anyio.to_thread.run_sync(worker.ensure)
            handle = await anyio.to_thread.run_sync(
                lambda: service.execute_sync(
                    phases,
                    scope,
                    options,
                    trigger=SyncTrigger.MCP,
                    allow_in_process=True,
                )
            )
            first = await anyio.to_thread.run_sync(handle.poll)
            relay = mcp_tools.ProgressRelay(
                lambda done, total, message: ctx.report_progress(done, total, message=message),
                first.request.phases,
            )
            view = await handle.wait_async(settings.mcp_sync_wait_s, on_progress=relay)
            return answer(mcp_tools.run_answer(view, attached=handle.attached))

    def get_sync_status(run_id: str | None = None) -> CallToolResult:
        """Show mirror freshness and running syncs; with run_id, that run's progress or result."""
        with tool_errors(settings):
            if run_id:
                return answer(mcp_tools.run_answer(service.handle(run_id.strip()).poll()))
            return answer(mcp_tools.status_answer(service.status()))

    async def get_product_quality_report(
        product_ids: Ids,
        start_date: Day = None,
        end_date: Day = None,
        statuses: list[TestStatus] | None = None,
        testing_type: str | None = None,
        test_ids: Ids | None = None,
    ) -> CallToolResult:
        """Test/bug counts, acceptance rates and health from the mirror; stale bugs are refetched.

        It first refetches the stale bugs of tests that can still change (read-through);
        dates filter on test end (UTC days), default statuses are the executed ones,
        test_ids replaces the filters.
        """
        with tool_errors(settings):
            filters = ReportFilters.parse(
                product_ids,
                start_date=start_date,
                end_date=end_date,
                statuses=statuses,
                testing_type=testing_type,
                test_ids=test_ids,
            )
            return answer(await report.quality_report(filters, settings, locks=locks))

    async def list_products() -> CallToolResult:
        """List mirrored products (stale ones refetched) with test counts and sync times."""
        with tool_errors(settings):
            warnings = await reads.products()
            data = await anyio.to_thread.run_sync(mcp_tools.list_products_answer)
            return answer(with_warnings(data, warnings))

    async def list_tests(
        product_ids: Ids,
        statuses: list[TestStatus] | None = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> CallToolResult:
        """List tests of products, newest end first, stale ones refetched; paginated."""
        with tool_errors(settings):
            page = kept_page(mcp_tools.list_tests_answer, product_ids, statuses, limit, offset)
            first = await anyio.to_thread.run_sync(page)  # validates, and names the page
            warnings = await reads.tests([t["id"] for t in first["tests"]])
            return answer(with_warnings(await anyio.to_thread.run_sync(page), warnings))

    async def get_test_summary(test_id: int) -> CallToolResult:
        """One test with its bug counts by status and severity, refetched when stale."""
        with tool_errors(settings):
            warnings = await reads.test_with_bugs(test_id)
            data = await anyio.to_thread.run_sync(mcp_tools.test_summary_answer, test_id)
            return answer(with_warnings(data, warnings))

    async def list_bugs(
        test_ids: Ids | None = None,
        product_ids: Ids | None = None,
        statuses: list[BugStatus] | None = None,
        severities: list[BugSeverity] | None = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> CallToolResult:
        """List bugs of tests or products, newest first, stale ones refetched; paginated."""
        with tool_errors(settings):
            page = kept_page(
                mcp_tools.list_bugs_answer,
                test_ids,
                product_ids,
                statuses,
                severities,
                limit,
                offset,
            )
            await anyio.to_thread.run_sync(page)  # validates before any API call
            warnings = await reads.bugs(test_ids, product_ids)
            return answer(with_warnings(await anyio.to_thread.run_sync(page), warnings))

    def search(
        query: str,
        entities: list[Entity] | None = None,
        product_ids: Ids | None = None,
        start_date: Day = None,
        end_date: Day = None,
        limit: Limit = 20,
        offset: Offset = 0,
        mode: Literal["simple", "raw"] = "simple",
    ) -> CallToolResult:
        """Full-text search of cached products, features, tests and bugs, best first, snippets
        with matches in **bold**. mode simple: words, "quoted phrases", last word a prefix;
        raw: FTS5 syntax (AND, OR, NOT, NEAR, prefix*); dates filter test ends and bug reports.
        """
        with tool_errors(settings):
            request = full_text.SearchRequest.parse(
                query,
                mode=mode,
                entities=entities,
                product_ids=product_ids,
                start_date=start_date,
                end_date=end_date,
                limit=limit,
                offset=offset,
            )
            return answer(full_text.search(request))

    def list_features(
        product_id: int,
        sort_by: Literal["title", "tests", "bugs"] = "title",
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CallToolResult:
        """List a cached product's features with user-story, test and bug counts."""
        with tool_errors(settings):
            return answer(
                views.list_features(product_id, sort_by=sort_by, limit=limit, offset=offset)
            )

    def get_feature_summary(feature_id: int) -> CallToolResult:
        """One cached feature: text, user stories, its tests, bug counts by status and severity."""
        with tool_errors(settings):
            return answer(views.feature_summary(feature_id))

    def list_users(
        kind: Literal["tester", "customer"] | None = None,
        days: Annotated[int | None, Field(ge=1, description="active in the last N days")] = None,
        product_ids: Ids | None = None,
        sort_by: Literal["activity", "name", "last_seen"] = "activity",
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CallToolResult:
        """List testers (bug authors) and customer users (test creators/submitters), by activity."""
        with tool_errors(settings):
            return answer(
                views.list_users(
                    kind=kind,
                    days=days,
                    product_ids=product_ids,
                    sort_by=sort_by,
                    limit=limit,
                    offset=offset,
                )
            )

    def get_user_summary(user: str) -> CallToolResult:
        """One user (by name): activity, products, their bugs' acceptance and rejection rates."""
        with tool_errors(settings):
            return answer(views.user_summary(user))

    def get_bug_summary(bug_id: int) -> CallToolResult:
        """One cached bug in full: steps, results, devices, feature, test, reporter, comments."""
        with tool_errors(settings):
            return answer(views.bug_summary(bug_id))

    def get_product_summary(product_id: int) -> CallToolResult:
        """A cached product's sections, feature, test and bug counts, recent tests, freshness."""
        with tool_errors(settings):
            return answer(views.product_summary(product_id))

    def query_metrics(
        metrics: list[str],
        dimensions: list[str] | None = None,
        filters: dict[str, Any] | None = None,
        start_date: Day = None,
        end_date: Day = None,
        sort_by: str | None = None,
        sort_order: Literal["asc", "desc"] | None = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
        compare_previous: bool = False,
    ) -> CallToolResult:
        """Mirrored test/bug metrics by up to 3 dimensions; filters map dimension to value(s).

        Names and meanings: resource testio://metrics (an unknown name lists them too).
        """
        with tool_errors(settings):
            query = MetricsQuery.parse(
                metrics,
                dimensions or [],
                filters,
                start_date=start_date,
                end_date=end_date,
                sort_by=sort_by,
                sort_order=sort_order,
                limit=limit,
                compare_previous=compare_previous,
            )
            # The echo is not part of the query's equality, but it is of the answer.
            question = (query, json.dumps(query.echo, sort_keys=True, default=str))
            return answer(metrics_answers.answer(question, lambda: run_query(query)))

    tools = [
        slim_tool(sync_data, SYNC),
        slim_tool(get_sync_status, READ_ONLY),
        slim_tool(get_product_quality_report, READ_ONLY),
        slim_tool(list_products, READ_ONLY),
        slim_tool(list_tests, READ_ONLY),
        slim_tool(get_test_summary, READ_ONLY),
        slim_tool(list_bugs, READ_ONLY),
        slim_tool(search, READ_ONLY),
        slim_tool(list_features, READ_ONLY),
        slim_tool(get_feature_summary, READ_ONLY),
        slim_tool(list_users, READ_ONLY),
        slim_tool(get_user_summary, READ_ONLY),
        slim_tool(get_bug_summary, READ_ONLY),
        slim_tool(get_product_summary, READ_ONLY),
        slim_tool(query_metrics, READ_ONLY),
    ]
    server = TestioMCPServer(
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=tools,
        token_verifier=access.verifier if access else None,
        auth=access.auth if access else None,
    )
    register_guides(server)
    return server


def register_guides(server: MCPServer) -> None:
    """The two prompts, the health-threshold resource and the analytics registry resource."""
    server.prompt(
        "analyze-product-quality",
        description="Analyze a product's test quality over a period, with fresh data.",
    )(prompts.analyze_product_quality)
    server.prompt(
        "prepare-ebr", description="Prepare the numbers of an executive business review."
    )(prompts.prepare_ebr)
    server.resource(
        prompts.THRESHOLDS_URI,
        name="health-thresholds",
        description="The health thresholds in force for the quality report's rates.",
        mime_type="application/json",
    )(lambda: prompts.thresholds_document())
    server.resource(
        METRICS_URI,
        name="metrics",
        description="Dimensions and metrics of query_metrics.",
        mime_type="application/json",
    )(lambda: mcp_tools.dumps(registry()))


def _version() -> str:
    try:
        return metadata.version("testio-sync")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class ServeError(TestioSyncError):
    """The server could not start serving (its port is taken); a failure, not a bad setting."""


def check_port(host: str, port: int) -> None:
    """Fail in one line when ``host:port`` cannot be listened on (e.g. taken).

    Raises:
        ServeError: the address is in use or not ours to bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None


def stop_on_signals(keeper: WorkerKeeper) -> None:
    """Ctrl-C and SIGTERM end a stdio server at once.

    The stdio transport reads stdin in a thread that no cancellation reaches: a
    normal shutdown would wait for the next input line, which never comes from a
    terminal. So the handler leaves the worker and exits the process itself.
    """

    def stop_now(signum: int, frame: object) -> None:
        logger.info("%s: shutting down", signal.Signals(signum).name)
        keeper.stop()
        logging.shutdown()
        os._exit(0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_now)


def run_server(
    settings: Settings,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8080,
    start_worker: bool = True,
) -> None:
    """Serve MCP over stdio (default) or streamable HTTP at ``http://host:port/mcp``.

    Starts a worker when none is alive (unless ``start_worker`` is False); on
    exit, leaves it to finish its run and stop once no server uses it. Logs go
    to stderr: on stdio, stdout is the protocol pipe. HTTP is stateless, so any
    of several servers behind one address answers any request; ``http_auth``
    decides which requests it takes.

    Raises:
        UsageError: an unknown transport.
        ConfigError: the data directory is unusable, or a non-loopback host has no tokens.
        ServeError: the HTTP port is taken.
    """
    if transport not in ("stdio", "http"):
        raise UsageError(f"transport must be stdio or http, not {transport!r}")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # One INFO line per API request, and per stateless HTTP request ("Terminating session").
    for noisy in ("httpx", "httpx2", "mcp.server.streamable_http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    access = http_access(settings, host) if transport == "http" else None  # before any bind
    if access is not None:
        check_port(host, port)
    keeper = WorkerKeeper(settings, enabled=start_worker)
    server = build_server(settings, worker=keeper, access=access)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if in_main and transport == "stdio":
        stop_on_signals(keeper)
    elif in_main:  # uvicorn handles both while it serves; before and after, we do
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        keeper.ensure()
        if access is not None:
            server.run("streamable-http", host=host, port=port, **access.run_options)
        else:
            server.run()
    except KeyboardInterrupt:
        logger.info("interrupted: shutting down")
    except SystemExit as exc:  # uvicorn's way to say it could not start
        raise ServeError(f"The HTTP server on {host}:{port} stopped (exit {exc.code}).") from None
    finally:
        keeper.stop()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
