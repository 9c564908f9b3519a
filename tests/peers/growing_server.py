"""A streamable-HTTP MCP server built on the official Python SDK whose tool list grows.

Calling `add_tool(name)` registers a tool `name` (it echoes its `text` argument) and sends
notifications/tools/list_changed to every session that has listed tools, as a server whose
tools come and go at runtime would. Usage: growing_server.py PORT
"""

import sys

from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer

PORT = int(sys.argv[1])


class GrowingServer(MCPServer):
    """Remembers the sessions that listed tools, to tell them when the list changes."""

    def __init__(self, name: str):
        super().__init__(name)
        self.listeners = []
        low = self._lowlevel_server
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


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT)
