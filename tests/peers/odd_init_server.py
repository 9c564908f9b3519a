"""A stdio "MCP server" that answers initialize with a result that is not an object (a
hostile or broken child): the bridge must refuse it cleanly, not panic. Usage: odd_init_server.py
"""

import json
import sys

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("method") == "initialize":
        print(json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": "ok"}), flush=True)
