"""A stateless (2026-07-28) client that follows tasks (the `io.modelcontextprotocol/tasks`
extension), in plain HTTP with the standard library: it calls `build_report`, gets a task back, and polls
`tasks/get` until the task is done. The upstream speaks the session era's tasks; the
gateway translates.

    python examples/tasks/client.py http://127.0.0.1:8080/servers/reports/mcp [SECONDS]
"""

import json
import sys
import time
import urllib.error
import urllib.request

CAPABILITIES = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


def request(url: str, method: str, params: dict, name: str) -> dict:
    """One stateless request: the envelope in `_meta`, the routing headers, the result."""
    params = dict(params)
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": CAPABILITIES,
        "io.modelcontextprotocol/clientInfo": {"name": "tasks-example", "version": "1"},
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
        "mcp-name": name,
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as e:  # errors come with a JSON-RPC body too
        answer = json.load(e)
    if "error" in answer:
        raise SystemExit(f"{method} failed: {answer['error']}")
    return answer["result"]


def main(url: str, seconds: float) -> None:
    created = request(url, "tools/call", {"name": "build_report", "arguments": {"seconds": seconds}}, "build_report")
    if created.get("resultType") != "task":
        raise SystemExit(f"expected a task, got {created}")
    task_id = created["taskId"]
    print(f"task created: {created['status']}")
    deadline = time.monotonic() + seconds + 30
    while True:
        task = request(url, "tasks/get", {"taskId": task_id}, task_id)
        if task["status"] in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the task is still {task['status']}")
        time.sleep(task.get("pollIntervalMs", 500) / 1000)
    print(f"task {task['status']}: {task['result']['content'][0]['text']}")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1)
