// A streamable-HTTP MCP server on the official TypeScript SDK (npm @modelcontextprotocol/sdk)
// whose tools ask the client a question the way many servers do: with `server.request`-style
// helpers and no related request id, which the SDK sends on the session's standalone GET
// stream, not on the call's own stream (and drops when no GET stream is open). Tools:
// ask_elicitation, ask_sampling, ask_roots; each returns what the client answered.
//
// With `events` as third argument the server keeps its events (in memory), so a GET stream
// reopened with Last-Event-ID gets what it missed, and it has one more tool:
// ask_after_reconnect logs a line on the GET stream, closes that stream, and at once asks
// for a name on it (kept for a client that reopens where it left off).
//
// usage: node ts_asking_server.mjs NODE_MODULES_DIR PORT [events]
import { createRequire } from "node:module";
import path from "node:path";
import { serveSessions } from "./session_http.mjs";

const [modules, port, mode] = process.argv.slice(2);
const keepEvents = mode === "events";
const require = createRequire(path.join(modules, "noop.js"));
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { isInitializeRequest } = require("@modelcontextprotocol/sdk/types.js");

// The SDK's example event store takes the stream id from the event id up to the first `_`,
// which is empty for the GET stream's id (`_GET_stream`), so it never replays that stream.
// This one keeps each event's stream id with it.
class EventStore {
  constructor() {
    this.events = [];
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}.${this.events.length}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.eventId === lastEventId);
    if (at < 0) return "";
    const { streamId } = this.events[at];
    for (const e of this.events.slice(at + 1)) {
      if (e.streamId === streamId) await send(e.eventId, e.message);
    }
    return streamId;
  }
}

function makeServer() {
  const server = new McpServer({ name: "asking-server", version: "0" }, { capabilities: { logging: {} } });
  const low = server.server;
  if (keepEvents) {
    server.registerTool("ask_after_reconnect", { description: "Asks after closing the GET stream" }, async (extra) => {
      await low.sendLoggingMessage({ level: "info", data: "before the stream closes" });
      extra.closeStandaloneSSEStream?.();
      const answer = await low.elicitInput({
        message: "What is your name, again?",
        requestedSchema: { type: "object", properties: { name: { type: "string" } } },
      });
      return { content: [{ type: "text", text: `after reconnect: ${answer.action} ${JSON.stringify(answer.content ?? {})}` }] };
    });
  }
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

serveSessions({
  sdk: { StreamableHTTPServerTransport, isInitializeRequest },
  port,
  open: makeServer,
  transportOptions: () => (keepEvents ? { eventStore: new EventStore() } : {}),
});
