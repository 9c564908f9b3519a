"""A minimal OAuth2 token endpoint (RFC 6749 section 4.4, client credentials) for tests.

POST /token with HTTP Basic client credentials and grant_type=client_credentials returns
TOKEN; anything else gets 401. GET /count tells how many tokens were issued.
Usage: token_server.py PORT CLIENT_ID CLIENT_SECRET TOKEN
"""

import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PORT, CLIENT_ID, CLIENT_SECRET, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
issued = 0


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(200, {"issued": issued})

    def do_POST(self):
        global issued
        length = int(self.headers.get("content-length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.path != "/token" or self.headers.get("authorization") != expected:
            self.reply(401, {"error": "invalid_client"})
            return
        if form.get("grant_type") != ["client_credentials"]:
            self.reply(400, {"error": "unsupported_grant_type"})
            return
        issued += 1
        self.reply(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
