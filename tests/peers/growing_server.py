"""A streamable-HTTP MCP server built on the official Python SDK whose tool list grows.

Calling `add_tool(name)` registers a tool `name` (it echoes its `text` argument) and sends
notifications/tools/list_changed to every session that has listed tools, as a server whose
tools come and go at runtime would. It also serves a resource `growing://note` that
sessions may subscribe to (subscribing to any other URI is an error); `touch(uri)` sends notifications/resources/updated for `uri` to
every session subscribed to it. Usage: growing_server.py PORT
"""

import sys

import mcp.types as types
from mcp.shared.exceptions import MCPError

from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer

PORT = int(sys.argv[1])


class GrowingServer(MCPServer):
    """Remembers the sessions that listed tools, to tell them when the list changes."""

    def __init__(self, name: str):
        super().__init__(name)
        self.listeners = []
        self.subscribers = []  # (session, uri)
        low = self._lowlevel_server

        async def subscribe(ctx, params):
            if str(params.uri) != "growing://note":
                raise MCPError(types.INVALID_PARAMS, f"no resource {params.uri}")
            self.subscribers.append((ctx.session, str(params.uri)))
            return types.EmptyResult()

        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
        plain = low.get_capabilities

        def with_list_changed(notification_options=None, *args, **kwargs):
            return plain(NotificationOptions(tools_changed=True), *args, **kwargs)

        low.get_capabilities = with_list_changed

    async def _handle_list_tools(self, ctx, params):
        if ctx.session not in self.listeners:
            self.listeners.append(ctx.session)
        return await super()._handle_list_tools(ctx, params)


server = GrowingServer("growing")


@server.tool()
async def add_tool(name: str) -> str:
    """Adds a tool called `name` and tells every listing session."""

    def added(text: str) -> str:
        return f"{name} says {text}"

    server.add_tool(added, name=name, description=f"{name}: added at runtime")
    for session in list(server.listeners):
        try:
            await session.send_tool_list_changed()
        except Exception:  # a session that went away
            server.listeners.remove(session)
    return f"added {name}"


@server.resource("growing://note")
def note() -> str:
    """A note whose updates subscribers hear of."""
    return "a note"


@server.tool()
async def touch(uri: str) -> str:
    """Tells every session subscribed to `uri` that it changed."""
    told = 0
    for session, subscribed in list(server.subscribers):
        if subscribed == uri:
            try:
                await session.send_resource_updated(uri)
                told += 1
            except Exception:  # a session that went away
                server.subscribers.remove((session, subscribed))
    return f"told {told}"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT)
