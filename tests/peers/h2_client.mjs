// A raw HTTP/2 MCP client on Node's own http2 module (nghttp2): connects over TLS trusting
// CA_FILE, which fails unless the server offers h2 by ALPN, then initializes and calls one
// tool in that session, and prints what it saw as one JSON object.
//
// usage: node h2_client.mjs NODE_MODULES_DIR URL CA_FILE TOOL ARGS_JSON
import fs from "node:fs";
import http2 from "node:http2";

const [, url, caFile, tool, argsJson] = process.argv.slice(2);
const target = new URL(url);
const session = http2.connect(target.origin, { ca: fs.readFileSync(caFile) });
session.on("error", (e) => {
  console.log(JSON.stringify({ error: String(e) }));
  process.exit(1);
});

function post(body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": target.pathname,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    });
    let data = "";
    let head = {};
    req.on("response", (h) => (head = h));
    req.setEncoding("utf8");
    req.on("data", (c) => (data += c));
    req.on("end", () => resolve({ head, data }));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

// The JSON-RPC message in a JSON or SSE body.
function message(data) {
  const line = data.split("\n").find((l) => l.startsWith("data:"));
  return JSON.parse(line ? line.slice(5) : data);
}

const out = { alpn: session.alpnProtocol ?? null };
const init = await post({
  jsonrpc: "2.0", id: 1, method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "h2", version: "0" } },
});
out.alpn = session.alpnProtocol;
out.init_status = init.head[":status"];
const sid = init.head["mcp-session-id"];
out.protocol_version = message(init.data).result?.protocolVersion ?? null;
const headers = { "mcp-session-id": sid, "mcp-protocol-version": out.protocol_version };
await post({ jsonrpc: "2.0", method: "notifications/initialized" }, headers);
const call = await post(
  { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: tool, arguments: JSON.parse(argsJson) } },
  headers,
);
out.call_status = call.head[":status"];
out.text = message(call.data).result?.content?.[0]?.text ?? null;
console.log(JSON.stringify(out));
session.close();
