"""A stdio MCP server built on the official Python SDK that tells which process it is, so
tests can see which child served a call: `whoami` returns the pid, `nap(seconds)` sleeps
(a call to cut short by killing the process), `env(name)` returns one variable (or
`<unset>`). Usage: pid_server.py
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("pid-server")


@server.tool()
def whoami() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
async def nap(seconds: float) -> str:
    """Sleeps, then says so (after telling stderr it started, so a test knows when)."""
    print(f"napping in {os.getpid()}", file=sys.stderr, flush=True)
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool()
def env(name: str) -> str:
    """One environment variable of the server."""
    return os.environ.get(name, "<unset>")


if __name__ == "__main__":
    server.run("stdio")
