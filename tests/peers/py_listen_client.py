"""The official PyPI `mcp` SDK client in the stateless 2026-07-28 era, listening with
`subscriptions/listen` for tool-list changes and updates of `growing://note` (and of a URI
the upstream refuses), while it makes the growing server touch the note and add a tool. Prints
what it saw as one JSON object.

usage: py_listen_client.py URL PREFIX
"""

import asyncio
import json
import sys

import anyio
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged


async def main(url: str, prefix: str) -> dict:
    out: dict = {"events": []}
    async with Client(url, mode="2026-07-28") as client:
        async with client.listen(
            tools_list_changed=True,
            resource_subscriptions=["growing://note", "nobody://nothing"],
        ) as sub:
            out["honored"] = sub.honored.model_dump(by_alias=True, exclude_none=True)
            out["touched"] = (await client.call_tool(f"{prefix}touch", {"uri": "growing://note"})).content[0].text
            await client.call_tool(f"{prefix}add_tool", {"name": "later"})
            wanted = {"ToolsListChanged", "ResourceUpdated:growing://note"}
            with anyio.move_on_after(15):
                async for event in sub:
                    if isinstance(event, ResourceUpdated):
                        out["events"].append(f"ResourceUpdated:{event.uri}")
                    elif isinstance(event, ToolsListChanged):
                        out["events"].append("ToolsListChanged")
                    else:
                        out["events"].append(type(event).__name__)
                    if wanted <= set(out["events"]):
                        break
        out["tools"] = [t.name for t in (await client.list_tools()).tools]
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
