// Drives the official TypeScript SDK client (npm @modelcontextprotocol/sdk) against one MCP
// endpoint and prints what it saw as one JSON object, so Rust tests can assert on a real
// client's view.
//
// usage: node ts_client.mjs NODE_MODULES_DIR URL [PREFIX]
//   PREFIX: how server-everything's tools are named here (default `everything_`)
// With TS_HTTP2_CA=FILE the SDK's requests go through undici with HTTP/2 allowed, trusting
// that CA, and `alpn` lists the protocols its connections negotiated.
import { createRequire } from "node:module";
import path from "node:path";

const [modules, url, prefix = "everything_"] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

const out = {};
const client = new Client({ name: "switchboard-ts-test", version: "0" });
let options = {};
if (process.env.TS_HTTP2_CA) {
  const fs = require("node:fs");
  const { Agent, buildConnector, fetch } = require("undici");
  const connector = buildConnector({ ca: fs.readFileSync(process.env.TS_HTTP2_CA), allowH2: true });
  out.alpn = [];
  const agent = new Agent({
    allowH2: true,
    connect: (opts, callback) =>
      connector(opts, (err, socket) => {
        if (socket) out.alpn.push(socket.alpnProtocol);
        callback(err, socket);
      }),
  });
  options = { fetch: (input, init) => fetch(input, { ...init, dispatcher: agent }) };
}
const transport = new StreamableHTTPClientTransport(new URL(url), options);
await client.connect(transport);
out.protocol_version = transport.protocolVersion ?? null;
out.server_name = client.getServerVersion()?.name ?? null;
const tools = await client.listTools();
out.tools = tools.tools.map((t) => t.name);
const text = (r) => r.content?.[0]?.text ?? null;
if (out.tools.includes(`${prefix}echo`)) {
  out.echo = text(await client.callTool({ name: `${prefix}echo`, arguments: { message: "from ts" } }));
  const start = Date.now();
  const progress = [];
  const done = await client.callTool(
    { name: `${prefix}trigger-long-running-operation`, arguments: { duration: 2, steps: 4 } },
    undefined,
    { onprogress: (p) => progress.push([p.progress, (Date.now() - start) / 1000]) },
  );
  out.progress = progress;
  out.long_running = text(done);
}
if (out.tools.includes("time_get_current_time")) {
  out.time = text(await client.callTool({ name: "time_get_current_time", arguments: { timezone: "UTC" } }));
}
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknown_tool_error = null;
} catch (e) {
  out.unknown_tool_error = String(e.message ?? e);
}
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
