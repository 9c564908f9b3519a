// A streamable-HTTP MCP server on the official TypeScript SDK (npm @modelcontextprotocol/sdk)
// whose tools ask the client a question the way many servers do: with `server.request`-style
// helpers and no related request id, which the SDK sends on the session's standalone GET
// stream, not on the call's own stream (and drops when no GET stream is open). Tools:
// ask_elicitation, ask_sampling, ask_roots; each returns what the client answered.
//
// usage: node ts_asking_server.mjs NODE_MODULES_DIR PORT
import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";
import { randomUUID } from "node:crypto";

const [modules, port] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { isInitializeRequest } = require("@modelcontextprotocol/sdk/types.js");

function makeServer() {
  const server = new McpServer({ name: "asking-server", version: "0" });
  const low = server.server;
  server.registerTool("ask_elicitation", { description: "Asks the client for a name" }, async () => {
    const answer = await low.elicitInput({
      message: "What is your name?",
      requestedSchema: { type: "object", properties: { name: { type: "string" } } },
    });
    return { content: [{ type: "text", text: `elicitation: ${answer.action} ${JSON.stringify(answer.content ?? {})}` }] };
  });
  server.registerTool("ask_sampling", { description: "Asks the client's model" }, async () => {
    const answer = await low.createMessage({
      messages: [{ role: "user", content: { type: "text", text: "say hi" } }],
      maxTokens: 10,
    });
    return { content: [{ type: "text", text: `sampling: ${answer.content.text}` }] };
  });
  server.registerTool("ask_roots", { description: "Asks the client for its roots" }, async () => {
    const answer = await low.listRoots();
    return { content: [{ type: "text", text: `roots: ${answer.roots.map((r) => r.uri).join(",")}` }] };
  });
  return server;
}

const transports = new Map();
const httpServer = http.createServer(async (req, res) => {
  let body;
  if (req.method === "POST") {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      res.writeHead(400).end("bad JSON");
      return;
    }
  }
  const sid = req.headers["mcp-session-id"];
  if (sid && transports.has(sid)) {
    await transports.get(sid).handleRequest(req, res, body);
    return;
  }
  if (!sid && req.method === "POST" && isInitializeRequest(body)) {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => transports.set(id, transport),
    });
    transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
    await makeServer().connect(transport);
    await transport.handleRequest(req, res, body);
    return;
  }
  res.writeHead(sid ? 404 : 400, { "content-type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: sid ? "unknown session" : "initialize first" } }));
});
httpServer.listen(Number(port), "127.0.0.1", () => console.log(`listening on ${port}`));
