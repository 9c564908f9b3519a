// An MCP client on the official TypeScript SDK that reaches a virtual server over WebSocket
// (`/servers/{name}/ws`, subprotocol `mcp`): lists the tools and calls the first one that
// takes no required arguments. Needs Node 22 (global WebSocket) and the SDK:
//
//   npm install @modelcontextprotocol/sdk
//   node examples/websocket/client.mjs ws://127.0.0.1:8080/servers/demo/ws
//
// NODE_MODULES=DIR loads the SDK from DIR instead (`make deps` puts one in .deps/npm).
import { createRequire } from "node:module";
import path from "node:path";

const url = process.argv[2] ?? "ws://127.0.0.1:8080/servers/demo/ws";
const require = createRequire(path.join(process.env.NODE_MODULES ?? process.cwd(), "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { WebSocketClientTransport } = require("@modelcontextprotocol/sdk/client/websocket.js");

const client = new Client({ name: "switchboard-ws-example", version: "0" });
await client.connect(new WebSocketClientTransport(new URL(url)));
const { tools } = await client.listTools();
console.log(`${tools.length} tools: ${tools.map((t) => t.name).join(", ")}`);
const simple = tools.find((t) => !(t.inputSchema?.required ?? []).length);
if (simple) {
  const result = await client.callTool({ name: simple.name, arguments: {} });
  console.log(`${simple.name} -> ${result.content?.map((c) => c.text ?? c.type).join(" ")}`);
}
await client.close();
