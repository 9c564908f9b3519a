"""The official PyPI `mcp` SDK client, with sampling, roots and elicitation callbacks, run as
a sequence of short session-era sessions: each initializes and at once calls one tool that
asks the client something. Prints {"ok": N, "failures": [...]} as JSON.

usage: py_asking_client.py URL TOOL SESSIONS
"""

import asyncio
import json
import sys

import mcp.types as types
from mcp import Client


async def one(url: str, tool: str, i: int) -> str:
    async def sampling(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"hi {i}"), model="m"
        )

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///r{i}")])

    async def elicitation(context, params):
        return types.ElicitResult(action="accept", content={"name": f"n{i}"})

    async with Client(
        url,
        mode="legacy",
        read_timeout_seconds=15,
        sampling_callback=sampling,
        list_roots_callback=roots,
        elicitation_callback=elicitation,
    ) as client:
        result = await asyncio.wait_for(client.call_tool(tool, {}), 15)
        return result.content[0].text if result.content else ""


async def main(url: str, tool: str, sessions: int) -> dict:
    out: dict = {"ok": 0, "failures": []}
    for i in range(sessions):
        try:
            text = await one(url, tool, i)
            expected = {"ask_elicitation": f'"n{i}"}}', "ask_sampling": f"hi {i}", "ask_roots": f"file:///r{i}"}
            want = next((w for name, w in expected.items() if tool.endswith(name)), None)
            if want and text.endswith(want):
                out["ok"] += 1
            else:
                out["failures"].append({"session": i, "text": text})
        except BaseException as e:  # a lost question times out here
            out["failures"].append({"session": i, "error": repr(e)})
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))))
