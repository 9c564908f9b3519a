"""The official PyPI `mcp` SDK client over stdio (launching e.g. `switchboard connect URL`)
or over the legacy HTTP+SSE transport: lists tools, calls `echo` and a progress-reporting
tool, and prints what it saw as one JSON object.

usage: py_stdio_client.py PREFIX COMMAND [ARGS...]
       py_stdio_client.py PREFIX --sse URL
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client


async def main(prefix: str, command: str, args: list) -> dict:
    out: dict = {}
    if command == "--sse":
        params = sse_client(args[0])
    else:
        params = StdioServerParameters(command=command, args=args)
    async with Client(params, mode="legacy") as client:
        out["tools"] = [t.name for t in (await client.list_tools()).tools]
        echoed = await client.call_tool(f"{prefix}echo", {"message": "over a client"})
        out["echo"] = echoed.content[0].text
        seen = []

        async def on_progress(progress, total, message):
            seen.append(progress)

        await client.call_tool(
            f"{prefix}trigger-long-running-operation",
            {"duration": 1, "steps": 3},
            progress_callback=on_progress,
        )
        out["progress"] = seen
        try:
            await client.call_tool("no-such-tool", {})
            out["unknown_tool"] = None
        except Exception as e:  # the gateway's error, as the SDK raises it
            out["unknown_tool"] = str(e)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))))
