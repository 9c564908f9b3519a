"""Drives the official PyPI `mcp` SDK client against one MCP endpoint and prints what it
saw as one JSON object, so Rust tests can assert on a real client's view.

usage: py_client.py URL MODE   (MODE: legacy | auto | 2026-07-28)
"""

import asyncio
import json
import sys
import time

from mcp import Client


async def main(url: str, mode: str) -> dict:
    out: dict = {}
    async with Client(url, mode=mode) as client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name if client.server_info else None
        prompts = await client.list_prompts()
        out["prompts"] = [p.name for p in prompts.prompts]
        got = await client.get_prompt("summarize", {"text": "Switchboard routes MCP."})
        out["prompt_text"] = got.messages[0].content.text
        resources = await client.list_resources()
        out["resources"] = [str(r.uri) for r in resources.resources]
        read = await client.read_resource("docs://switchboard/handbook")
        out["resource_text"] = read.contents[0].text
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        if "everything_echo" in out["tools"]:
            echoed = await client.call_tool("everything_echo", {"message": "via switchboard"})
            out["echo"] = echoed.content[0].text
            start = time.monotonic()
            seen = []

            async def on_progress(progress, total, message):
                seen.append([progress, round(time.monotonic() - start, 3)])

            done = await client.call_tool(
                "everything_trigger-long-running-operation",
                {"duration": 2, "steps": 4},
                progress_callback=on_progress,
            )
            out["progress"] = seen
            out["long_running"] = done.content[0].text
            out["long_running_seconds"] = round(time.monotonic() - start, 3)
            # Upstream prompts and resources, whatever the upstream offers.
            upstream_prompts = [p for p in prompts.prompts if p.name.startswith("everything_")]
            out["upstream_prompts"] = [p.name for p in upstream_prompts]
            simple = next(p for p in upstream_prompts if not any(a.required for a in (p.arguments or [])))
            got = await client.get_prompt(simple.name, {})
            out["upstream_prompt_messages"] = len(got.messages)
            upstream_resources = [str(r.uri) for r in resources.resources if not str(r.uri).startswith("docs://")]
            out["upstream_resources"] = upstream_resources
            read = await client.read_resource(upstream_resources[0])
            out["upstream_resource_uri"] = str(read.contents[0].uri)
        if "time_get_current_time" in out["tools"]:
            got = await client.call_tool("time_get_current_time", {"timezone": "UTC"})
            out["time"] = got.content[0].text
        try:
            await client.get_prompt("no-such-prompt", {})
            out["unknown_prompt_error"] = None
        except Exception as e:  # the SDK raises on JSON-RPC errors
            out["unknown_prompt_error"] = str(e)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
