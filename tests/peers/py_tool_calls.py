"""Lists a virtual server's tools and calls some with the official PyPI `mcp` SDK client,
printing what it saw as one JSON object: each tool's name, input schema and annotations,
and for each call its result (text, structured content, isError, the progress messages
that came first) or its JSON-RPC error.

usage: py_tool_calls.py URL CALLS   (CALLS: a JSON list of [tool, arguments])
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError


async def main(url: str, calls: list) -> dict:
    out: dict = {"tools": {}, "calls": []}
    async with Client(url) as client:
        tools = await client.list_tools()
        for t in tools.tools:
            out["tools"][t.name] = {
                "inputSchema": t.input_schema,
                "outputSchema": t.output_schema,
                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
                "description": t.description,
            }
        for name, args in calls:
            progress = []

            async def on_progress(done, total, message):
                progress.append(message)

            try:
                r = await client.call_tool(name, args, progress_callback=on_progress)
                out["calls"].append({
                    "isError": bool(r.is_error),
                    "text": [c.text for c in r.content if getattr(c, "type", "") == "text"],
                    "types": [c.type for c in r.content],
                    "structured": r.structured_content,
                    "progress": progress,
                })
            except MCPError as e:
                out["calls"].append({"error": {"code": e.error.code, "message": e.error.message}})
            except Exception as e:  # anything else the client raised, for the test to show
                out["calls"].append({"exception": f"{type(e).__name__}: {e}"})
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
