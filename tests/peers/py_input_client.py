"""The official PyPI `mcp` SDK client in the stateless 2026-07-28 era, with sampling, roots
and elicitation callbacks: calls server-everything's tools that ask the client those things
(through the gateway they come back as `InputRequiredResult`s, which the SDK answers and
retries), and prints what it saw as one JSON object.

usage: py_input_client.py URL PREFIX TAG
"""

import asyncio
import json
import sys

import mcp.types as types
from mcp import Client


async def main(url: str, prefix: str, tag: str) -> dict:
    out: dict = {"sampling_requests": 0, "roots_requests": 0, "elicitation_requests": 0}

    async def sampling(context, params):
        out["sampling_requests"] += 1
        asked = params.messages[0].content.text if params.messages else ""
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled by {tag}: {asked}"),
            model=f"model-{tag}",
        )

    async def roots(context):
        out["roots_requests"] += 1
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/{tag}", name=f"root-{tag}")])

    async def elicitation(context, params):
        out["elicitation_requests"] += 1
        return types.ElicitResult(action="decline")

    async with Client(
        url,
        mode="2026-07-28",
        sampling_callback=sampling,
        list_roots_callback=roots,
        elicitation_callback=elicitation,
    ) as client:
        out["protocol_version"] = client.protocol_version
        text = lambda r: "\n".join(getattr(c, "text", "") for c in r.content)
        for key, tool, args in [
            ("sampling", "trigger-sampling-request", {"prompt": f"question from {tag}", "maxTokens": 20}),
            ("roots", "get-roots-list", {}),
            ("elicitation", "trigger-elicitation-request", {}),
            ("echo", "echo", {"message": "no input needed"}),
        ]:
            try:
                out[key] = text(await client.call_tool(f"{prefix}{tool}", args))
            except Exception as e:  # the gateway's error, as the SDK raises it
                out[f"{key}_error"] = repr(e)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
