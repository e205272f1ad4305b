"""The MCP server: ``server`` builds and runs it (transport, worker); ``tools`` holds tool logic."""

from testio_sync.mcp_server.server import WorkerKeeper, build_server, run_server, tool_errors

__all__ = ["WorkerKeeper", "build_server", "run_server", "tool_errors"]
