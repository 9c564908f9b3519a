// The official TypeScript SDK client (npm @modelcontextprotocol/sdk) declaring sampling,
// roots and elicitation: it answers the server's sampling/createMessage and roots/list
// requests with `TAG` in them (and declines elicitations), calls server-everything's tools
// that send those requests, runs the tool-call checks (echo, progress, an unknown tool),
// and prints what it saw as one JSON object.
//
// usage: node ts_sampling_client.mjs NODE_MODULES_DIR URL PREFIX TAG [ws | CONNECT_BIN]
//   ws: URL is a WebSocket endpoint (ws://…/servers/NAME/ws)
//   CONNECT_BIN: reach URL through `CONNECT_BIN connect URL` over stdio instead of HTTP
import { createRequire } from "node:module";
import path from "node:path";

const [modules, url, prefix, tag, mode] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { WebSocketClientTransport } = require("@modelcontextprotocol/sdk/client/websocket.js");
const { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

const out = { sampling_requests: 0, roots_requests: 0, elicitation_requests: 0 };
const client = new Client(
  { name: `switchboard-ts-${tag}`, version: "0" },
  { capabilities: { sampling: {}, roots: { listChanged: true }, elicitation: {} } },
);
client.setRequestHandler(ElicitRequestSchema, async () => {
  out.elicitation_requests += 1;
  return { action: "decline" };
});
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  out.sampling_requests += 1;
  const asked = request.params.messages?.[0]?.content?.text ?? "";
  return {
    model: `model-${tag}`,
    role: "assistant",
    content: { type: "text", text: `sampled by ${tag}: ${asked}` },
  };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  out.roots_requests += 1;
  return { roots: [{ uri: `file:///work/${tag}`, name: `root-${tag}` }] };
});
const transport =
  mode === "ws"
    ? new WebSocketClientTransport(new URL(url))
    : mode
      ? new StdioClientTransport({ command: mode, args: ["connect", url] })
      : new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
// Progress as the transport delivers it: the SDK runs progress callbacks a tick after the
// message, so one that arrives together with the result can miss its callback.
let progressSeen = [];
{
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    if (message.method === "notifications/progress") progressSeen.push(message.params.progress);
    deliver(message, extra);
  };
}
const tools = (await client.listTools()).tools.map((t) => t.name);
out.tools = tools;
const text = (r) => r.content?.map((c) => c.text ?? "").join("\n") ?? "";
try {
  out.sampling = text(
    await client.callTool({ name: `${prefix}trigger-sampling-request`, arguments: { prompt: `question from ${tag}`, maxTokens: 20 } }),
  );
} catch (e) {
  out.sampling_error = String(e.message ?? e);
}
try {
  out.roots = text(await client.callTool({ name: `${prefix}get-roots-list`, arguments: {} }));
} catch (e) {
  out.roots_error = String(e.message ?? e);
}
try {
  out.elicitation = text(await client.callTool({ name: `${prefix}trigger-elicitation-request`, arguments: {} }));
} catch (e) {
  out.elicitation_error = String(e.message ?? e);
}
try {
  out.echo = text(await client.callTool({ name: `${prefix}echo`, arguments: { message: "over a client" } }));
  progressSeen = [];
  let callbacks = 0;
  await client.callTool(
    { name: `${prefix}trigger-long-running-operation`, arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: () => (callbacks += 1) },
  );
  out.progress = progressSeen;
  out.progress_callbacks = callbacks;
} catch (e) {
  out.tool_call_error = String(e.message ?? e);
}
try {
  const r = await client.callTool({ name: "no-such-tool", arguments: {} });
  out.unknown_tool = r.isError ? text(r) : null;
} catch (e) {
  out.unknown_tool = String(e.message ?? e);
}
await transport.terminateSession?.().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
