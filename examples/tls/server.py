"""A streamable-HTTP MCP server on the official Python SDK, served over TLS by uvicorn.

usage: server.py PORT CERT KEY [CLIENT_CA]
With CLIENT_CA, every connection must present a client certificate that CA issued (mutual
TLS); handshakes without one, or with another CA's, fail. Tool `hello(name)` greets.
"""

import ssl
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

PORT, CERT, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CLIENT_CA = sys.argv[4] if len(sys.argv) > 4 else None

server = MCPServer("tls-server")


@server.tool()
def hello(name: str) -> str:
    """Greets `name`, so a test sees the call went through."""
    return f"hello {name}, over TLS"


if __name__ == "__main__":
    app = server.streamable_http_app(host="127.0.0.1")
    options = {}
    if CLIENT_CA:
        options = {"ssl_ca_certs": CLIENT_CA, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=PORT,
        ssl_certfile=CERT,
        ssl_keyfile=KEY,
        log_level="warning",
        **options,
    )
