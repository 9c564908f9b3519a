// A session-era (2025-11-25) MCP server whose tool runs as a task, on the official
// TypeScript SDK (npm @modelcontextprotocol/sdk): `build_report` takes `seconds`, answers
// a task at once, and completes it that many seconds later. Tasks live in the SDK's
// in-memory task store; each belongs to the session that created it.
//
//   node examples/tasks/server.mjs NODE_MODULES_DIR [PORT]     (PORT defaults to 3011)
//
// NODE_MODULES_DIR is where the SDK is installed (`make deps` puts it in .deps/npm/node_modules).
import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";
import { randomUUID } from "node:crypto";

const [modules, port = "3011"] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { InMemoryTaskStore, InMemoryTaskMessageQueue } = require("@modelcontextprotocol/sdk/experimental/tasks");
const { isInitializeRequest } = require("@modelcontextprotocol/sdk/types.js");
const { z } = require("zod");

const taskStore = new InMemoryTaskStore();

function makeServer() {
  const server = new McpServer(
    { name: "report-server", version: "1.0.0" },
    { capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } }, taskStore, taskMessageQueue: new InMemoryTaskMessageQueue() },
  );
  server.experimental.tasks.registerToolTask(
    "build_report",
    {
      description: "Builds a report in the background (as a task)",
      inputSchema: { seconds: z.number().min(0).max(60).default(1) },
      execution: { taskSupport: "optional" },
    },
    {
      async createTask({ seconds }, { taskStore, taskRequestedTtl }) {
        const task = await taskStore.createTask({ ttl: taskRequestedTtl, pollInterval: 250 });
        setTimeout(() => {
          taskStore
            .storeTaskResult(task.taskId, "completed", { content: [{ type: "text", text: `report ready after ${seconds}s` }] })
            .catch(() => {}); // cancelled meanwhile
        }, seconds * 1000);
        return { task };
      },
      async getTask(_args, { taskId, taskStore }) {
        return await taskStore.getTask(taskId);
      },
      async getTaskResult(_args, { taskId, taskStore }) {
        return await taskStore.getTaskResult(taskId);
      },
    },
  );
  return server;
}

const transports = new Map();
http
  .createServer(async (req, res) => {
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
  })
  .listen(Number(port), "127.0.0.1", () => console.log(`listening on ${port}`));
