"""A stateless (2026-07-28) MCP client on the official PyPI `mcp` SDK, against a virtual
server: it opens a `subscriptions/listen` stream for tool-list changes, then calls an
upstream tool that asks the client to sample. Upstreams speak the session era, so the
gateway turns the upstream's sampling request into an `InputRequiredResult`; the SDK
answers it with the callback below and retries, and the gateway goes on with the same
upstream call.

    pip install mcp
    python examples/stateless/client.py http://127.0.0.1:8080/servers/demo/mcp everything_

(`make run` serves that virtual server; `make deps` puts the SDK in .deps/venv.)
"""

import asyncio
import sys

import mcp.types as types
from mcp import Client


async def sample(context, params):
    """Stands in for a model: answers every sampling request the same way."""
    asked = params.messages[0].content.text if params.messages else ""
    print(f"the upstream asked to sample: {asked!r}")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="a sampled answer"),
        model="example-model",
    )


async def main(url: str, prefix: str) -> None:
    async with Client(url, mode="2026-07-28", sampling_callback=sample) as client:
        async with client.listen(tools_list_changed=True) as subscription:
            print(f"listening; the gateway honors {subscription.honored.model_dump(exclude_none=True)}")
        result = await client.call_tool(f"{prefix}trigger-sampling-request", {"prompt": "hello", "maxTokens": 10})
        print(result.content[0].text)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0] if args else "http://127.0.0.1:8080/servers/demo/mcp",
            args[1] if len(args) > 1 else "everything_",
        )
    )
