"""What a newcomer does after `make run`: the official PyPI `mcp` SDK client lists the demo
server's tools (waiting until both quickstart upstreams are listed) and calls one tool of
each, printing what it saw as one JSON object.

usage: py_quickstart.py URL
"""

import asyncio
import json
import sys
import time

from mcp import Client

WANTED = ("everything_echo", "time_get_current_time")


async def main(url: str) -> dict:
    out: dict = {}
    deadline = time.monotonic() + 30
    async with Client(url) as client:
        while True:
            tools = [t.name for t in (await client.list_tools()).tools]
            if all(w in tools for w in WANTED) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        out["tools"] = tools
        echoed = await client.call_tool("everything_echo", {"message": "hello"})
        out["echo"] = echoed.content[0].text
        now = await client.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        out["time"] = json.loads(now.content[0].text)
    return out


if __name__ == "__main__":
    try:
        print(json.dumps(asyncio.run(main(sys.argv[1]))))
    except BaseException as e:  # report, do not hide: the test asserts on it
        print(json.dumps({"exception": repr(e)}))
