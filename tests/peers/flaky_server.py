"""A streamable-HTTP MCP server (official Python SDK) in front of which a small ASGI layer
plays a flaky network: the first attempt of every `tools/call` to a tool in FLAKY gets an
HTTP 503, a repeat of the same JSON-RPC request goes through. Tools:

  read_config   annotated readOnlyHint: safe to retry
  write_record  no hints: not safe to retry
  attempts_so_far    how many POSTs each flaky tool got so far (JSON text)
  traceparents_seen  the traceparent header of every tools/call so far (JSON list)
  cancellations_seen the ids `hang` was called with, and the requestIds cancelled (JSON)
  hang          never answers (for timeouts)

usage: flaky_server.py PORT
"""

import asyncio
import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

PORT = int(sys.argv[1])
FLAKY = {"read_config", "write_record"}
attempts = {name: 0 for name in FLAKY}
seen = set()
traceparents = []  # the `traceparent` header of every tools/call, in order
hang_ids = []  # the JSON-RPC ids `hang` was called with
cancelled = []  # the requestIds of notifications/cancelled received

server = MCPServer("flaky")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def read_config(key: str) -> str:
    """Reads a setting (read-only: repeating it is harmless)."""
    return f"{key}=on"


@server.tool()
def write_record(value: str) -> str:
    """Appends a record (repeating it would write twice)."""
    return f"wrote {value}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def attempts_so_far() -> str:
    """How many POSTs reached each flaky tool."""
    return json.dumps(attempts)


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def traceparents_seen() -> str:
    """The traceparent headers tools/call requests carried (JSON list)."""
    return json.dumps(traceparents)


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def cancellations_seen() -> str:
    """The ids `hang` was called with and the requestIds cancellations named (JSON)."""
    return json.dumps({"hang_ids": hang_ids, "cancelled": cancelled})


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "late"


app = server.streamable_http_app()


async def flaky(scope, receive, send):
    if scope["type"] != "http" or scope["method"] != "POST":
        return await app(scope, receive, send)
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    try:
        msg = json.loads(body)
    except ValueError:
        msg = {}
    name = (msg.get("params") or {}).get("name") if isinstance(msg, dict) else None
    if isinstance(msg, dict) and msg.get("method") == "tools/call":
        headers = dict(scope.get("headers") or [])
        traceparents.append(headers.get(b"traceparent", b"").decode())
        if name == "hang":
            hang_ids.append(msg.get("id"))
    if isinstance(msg, dict) and msg.get("method") == "notifications/cancelled":
        cancelled.append((msg.get("params") or {}).get("requestId"))
    if msg.get("method") == "tools/call" and name in FLAKY:
        attempts[name] += 1
        key = (name, json.dumps(msg.get("id")))
        if key not in seen:
            seen.add(key)
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"flaky: try again"})
            return

    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    await app(scope, replay, send)


if __name__ == "__main__":
    uvicorn.run(flaky, host="127.0.0.1", port=PORT, log_level="warning")
