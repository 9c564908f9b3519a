// A client for the conformance suite's client scenarios (npm @modelcontextprotocol/conformance),
// on the official TypeScript SDK: it does what the scenario named by MCP_CONFORMANCE_SCENARIO
// asks of a client, talking to the scenario's server (the URL the suite appends) either
// directly over streamable HTTP or through `switchboard connect URL` over stdio.
//
// usage: node conformance_client.mjs NODE_MODULES_DIR MODE URL
//   MODE: `direct`, or `connect=BIN` to go through `BIN connect URL`
import { createRequire } from "node:module";
import path from "node:path";

const [modules, mode, url] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { ElicitRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "initialize";
const transport = mode.startsWith("connect=")
  ? new StdioClientTransport({ command: mode.slice("connect=".length), args: ["connect", url], stderr: "inherit" })
  : new StreamableHTTPClientTransport(new URL(url));
const client = new Client(
  { name: "switchboard-conformance-client", version: "0.1.0" },
  { capabilities: { elicitation: {} } },
);
// Accept every elicitation, filling in the defaults the requested schema gives (SEP-1034).
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  const content = {};
  for (const [name, field] of Object.entries(request.params.requestedSchema?.properties ?? {})) {
    if (field.default !== undefined) content[name] = field.default;
  }
  return { action: "accept", content };
});

await client.connect(transport);
const { tools } = await client.listTools().catch(() => ({ tools: [] }));
const call = (name, args = {}) =>
  tools.some((t) => t.name === name) ? client.callTool({ name, arguments: args }) : null;
switch (scenario) {
  case "tools_call":
    await call("add_numbers", { a: 5, b: 3 });
    break;
  case "elicitation-sep1034-client-defaults":
    await call("test_client_elicitation_defaults");
    break;
  case "sse-retry":
    await call("test_reconnection");
    break;
  default:
    break; // initialize: connecting was the test
}
await client.close();
