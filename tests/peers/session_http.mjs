// Serves MCP over streamable HTTP with a server per session, for the session-era test peers
// on the official TypeScript SDK: initialize opens a session (a new server from `open`),
// later requests go to theirs, anything else gets the SDK's usual 400/404. Prints
// `listening on PORT` once it listens on 127.0.0.1.
//
//   serveSessions({ sdk, port, open, transportOptions, hosts })
//     sdk: { StreamableHTTPServerTransport, isInitializeRequest } from the SDK
//     open(): a connected-to-nothing Server (or McpServer); its `close` ends the session
//     transportOptions(): extra options for each session's transport (an event store, ...)
//     hosts: if given, the only Host names served (others get 403: DNS-rebinding protection)
import http from "node:http";
import { randomUUID } from "node:crypto";

export function serveSessions({ sdk, port, open, transportOptions = () => ({}), onClose = () => {}, hosts }) {
  const transports = new Map();
  const server = http.createServer(async (req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "");
    if (hosts && !hosts.includes(host)) {
      res.writeHead(403).end("only localhost");
      return;
    }
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
    if (!sid && req.method === "POST" && sdk.isInitializeRequest(body)) {
      const mcp = open();
      const transport = new sdk.StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
        ...transportOptions(),
      });
      transport.onclose = () => {
        onClose(mcp);
        if (transport.sessionId) transports.delete(transport.sessionId);
      };
      await mcp.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    res.writeHead(sid ? 404 : 400, { "content-type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: sid ? "unknown session" : "initialize first" } }));
  });
  server.listen(Number(port), "127.0.0.1", () => console.log(`listening on ${port}`));
  return server;
}
