// The official TypeScript SDK client, declaring sampling, roots and elicitation, run as a
// sequence of short sessions: each initializes and at once calls one tool that asks the
// client something, then ends the session. Prints {"ok": N, "failures": [...]} as JSON.
//
// usage: node ts_asking_client.mjs NODE_MODULES_DIR URL TOOL SESSIONS [http | ws | sse]
//   ws: URL is a WebSocket endpoint; sse: URL is a legacy HTTP+SSE endpoint (2024-11-05)
import { createRequire } from "node:module";
import path from "node:path";

const [modules, url, tool, sessions, mode = "http"] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { SSEClientTransport } = require("@modelcontextprotocol/sdk/client/sse.js");
const { WebSocketClientTransport } = require("@modelcontextprotocol/sdk/client/websocket.js");
const { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

const out = { ok: 0, failures: [] };
for (let i = 0; i < Number(sessions); i++) {
  const client = new Client(
    { name: "asking-client", version: "0" },
    { capabilities: { sampling: {}, roots: { listChanged: true }, elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: `n${i}` } }));
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    model: "m", role: "assistant", content: { type: "text", text: `hi ${i}` },
  }));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: `file:///r${i}` }] }));
  const transport =
    mode === "ws"
      ? new WebSocketClientTransport(new URL(url))
      : mode === "sse"
        ? new SSEClientTransport(new URL(url))
        : new StreamableHTTPClientTransport(new URL(url));
  try {
    await client.connect(transport);
    // Bounded: a lost question shows up as a failure here, not as a hung test.
    const result = await client.callTool({ name: tool, arguments: {} }, undefined, { timeout: 15000 });
    const text = result.content?.[0]?.text ?? "";
    const expected = { ask_elicitation: `"n${i}"}`, ask_sampling: `hi ${i}`, ask_roots: `file:///r${i}` };
    const want = Object.entries(expected).find(([name]) => tool.endsWith(name))?.[1];
    if (want && text.endsWith(want)) out.ok += 1;
    else out.failures.push({ session: i, text });
  } catch (e) {
    out.failures.push({ session: i, error: String(e) });
  }
  try {
    await transport.terminateSession?.();
  } catch {}
  await client.close();
}
console.log(JSON.stringify(out));
