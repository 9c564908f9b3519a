"""An MCP server (the official Python SDK) that, as the MCP spec advises, binds each session
to who opened it: streamable HTTP at /mcp, whose requests in a session must carry the
Authorization the session's initialize carried (403 otherwise), and legacy HTTP+SSE at
/sse (+ /messages/). Every request needs `Authorization: Bearer <token>` with one of TOKENS
(401 otherwise). Tool `whoami` returns the Authorization header of the request that called
it. Usage: bound_session_server.py PORT TOKEN[,TOKEN...]
"""

import json
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette

PORT = int(sys.argv[1])
TOKENS = {f"Bearer {t}" for t in sys.argv[2].split(",")}

server = MCPServer("bound-sessions")


@server.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this call came with."""
    return (ctx.headers or {}).get("authorization", "<none>")


owners = {}  # streamable-HTTP session id -> the Authorization that opened it


def header(scope, name):
    for k, v in scope.get("headers", []):
        if k.decode().lower() == name:
            return v.decode()
    return None


class Bound:
    """Checks the token, and that a session's requests come from whoever opened it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        auth = header(scope, "authorization")

        async def refuse(status, message):
            body = json.dumps({"error": message}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})

        if auth not in TOKENS:
            return await refuse(401, "unknown token")
        session = header(scope, "mcp-session-id")
        if session is not None and session in owners and owners[session] != auth:
            return await refuse(403, "this session belongs to someone else")

        async def noting(message):
            if message["type"] == "http.response.start":
                for k, v in message.get("headers", []):
                    if k.decode().lower() == "mcp-session-id":
                        owners.setdefault(v.decode(), auth)
            await send(message)

        return await self.app(scope, receive, noting)


streamable = server.streamable_http_app()
legacy = server.sse_app()
app = Starlette(
    routes=list(legacy.routes) + list(streamable.routes),
    lifespan=streamable.router.lifespan_context,
)

if __name__ == "__main__":
    uvicorn.run(Bound(app), host="127.0.0.1", port=PORT, log_level="warning")
