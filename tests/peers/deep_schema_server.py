"""A streamable-HTTP MCP server (the official Python SDK) with one ordinary tool, `echo`,
and one, `deep`, that nests 124 levels: within what JSON readers take in the
upstream's own answer, but past it once a snapshot wraps it in a few more levels (the
hardening issue's "one upstream can freeze all config"). Usage: deep_schema_server.py PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

PORT = int(sys.argv[1])
# The tool object (1) and its inputSchema (1) around 122 nested lists: 124 levels, 127
# with the JSON-RPC answer around it (serde_json reads at most 127).
LISTS = 122


def nested(levels):
    value = []
    for _ in range(levels - 1):
        value = [value]
    return value


class DeepServer(MCPServer):
    async def _handle_list_tools(self, ctx, params):
        listed = await super()._handle_list_tools(ctx, params)
        deep = listed.tools[0].model_copy(
            update={
                "name": "deep",
                "description": "A tool whose schema nests too deep for a snapshot",
                "input_schema": {"type": "object", "x-nested": nested(LISTS)},
            }
        )
        listed.tools.append(deep)
        return listed


server = DeepServer("deep")


@server.tool()
async def echo(text: str) -> str:
    """Returns `text`."""
    return text


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT)
