"""A stdio MCP server built on the official Python SDK that tells which process it is, so
tests can see which child served a call: `whoami` returns the pid, `nap(seconds)` sleeps
(a call to cut short by killing the process), `env(name)` returns one variable (or
`<unset>`), `ask_roots` asks the client for its roots (whatever capabilities it declared,
as the SDK allows) and returns them, `say(text)` logs `text` to the client.
Usage: pid_server.py
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

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


@server.tool()
async def ask_roots(ctx: Context) -> str:
    """The client's roots, asked for."""
    answer = await ctx.session.list_roots()
    return ",".join(str(r.uri) for r in answer.roots)


@server.tool()
async def say(text: str, ctx: Context) -> str:
    """Logs `text` to the client, then returns it."""
    await ctx.info(text)
    return text


if __name__ == "__main__":
    server.run("stdio")
