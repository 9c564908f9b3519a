"""The official PyPI `mcp` SDK client with extra HTTP headers (credentials): lists the tools
of one endpoint and calls one, printing what it saw as one JSON object.

usage: py_tools.py URL TOOL ARGS_JSON [HEADER=VALUE ...]
With HTTP2=1 in the environment the client speaks HTTP/2 (over TLS, by ALPN) and reports
the HTTP versions its responses came in.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, tool: str, args: dict, headers: dict) -> dict:
    out: dict = {}
    versions: set = set()

    async def note(response):
        versions.add(response.http_version)

    http2 = os.environ.get("HTTP2") == "1"
    async with httpx2.AsyncClient(
        headers=headers, timeout=30, http2=http2, event_hooks={"response": [note]}
    ) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            out["tools"] = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool(tool, args)
            out["is_error"] = bool(result.is_error)
            out["text"] = result.content[0].text if result.content else ""
    out["http_versions"] = sorted(versions)
    return out


if __name__ == "__main__":
    url, tool, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    headers = dict(h.split("=", 1) for h in sys.argv[4:])
    try:
        print(json.dumps(asyncio.run(main(url, tool, args, headers))))
    except BaseException as e:  # report, do not hide: the test asserts on it
        print(json.dumps({"exception": repr(e)}))
