// The conformance suite's fixture server, written as a session-era server: protocol 2025-11-25,
// streamable HTTP, a session per client (Mcp-Session-Id), on the official TypeScript SDK. It has
// the tools, prompts and resources the pre-release suite's `server --requirements 2026-07-28`
// scenarios call, so that run through the gateway in front of it exercises the gateway's
// translation rather than missing fixtures. It uses the SDK's low-level `Server`, not
// `McpServer`: the scenarios check exact wire shapes that McpServer would change (it turns
// every tool error into an isError result, derives input schemas from zod, and has no error
// data for an unknown resource), e.g. test_missing_capability's -32021 error with
// `requiredCapabilities` and json_schema_2020_12_tool's schema verbatim.
//
// Where a scenario expects an `InputRequiredResult`, the tool (or prompt) asks the client the
// session-era way: a request sent mid-call with the call's request id (`extra.sendRequest`),
// so it travels on the call's own SSE stream; the gateway turns it into an InputRequiredResult
// for a stateless client and hands the retry's `inputResponses` back as the answer.
//
// The tasks-extension fixtures are 2025-11-25 task-capable tools (capability `tasks` with
// list, cancel and requests.tools.call; `execution.taskSupport` per tool; the SDK's
// InMemoryTaskStore and InMemoryTaskMessageQueue, whose tasks/get, tasks/result, tasks/list
// and tasks/cancel handlers the SDK installs; McpServer's `experimental.tasks.registerToolTask`
// is sugar over the same `extra.taskStore`). How each maps:
//   greet               plain tool (no taskSupport): "Hello, {name}!"
//   slow_compute        optional: sleeps `seconds` then "Computed {label} in {seconds}s"; a
//                       task stops early and stays `cancelled` on tasks/cancel
//   failing_job         required: after ~1s a tool error; the task ends `failed` with an
//                       isError result (2025-11-25: "failed ... includes isError: true")
//   protocol_error_job  optional: a protocol-level failure; the task ends `failed` with a
//                       statusMessage and no result, so tasks/result answers a JSON-RPC error
//   confirm_delete      optional: asks elicitation/create {confirm}; in a task the request is
//                       queued with related-task metadata, the task is `input_required`, and
//                       the client gets the request on its tasks/result stream
//   multi_input         optional: asks two elicitations at once (both pending together)
//   test_tool_with_task required: asks elicitation/create {name} (as confirm_delete does),
//                       then "Hello, {name}!"
// Run without `task`, an optional tool runs in the call and asks on the call's stream; a
// required one answers -32601, and a plain tool called with `task` also answers -32601.
//
// usage: node conformance_fixture_server.mjs NODE_MODULES_DIR PORT
import { createRequire } from "node:module";
import path from "node:path";
import { serveSessions } from "./session_http.mjs";

const [modules, port] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Server } = require("@modelcontextprotocol/sdk/server/index.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { InMemoryTaskStore, InMemoryTaskMessageQueue } = require("@modelcontextprotocol/sdk/experimental/tasks");
const T = require("@modelcontextprotocol/sdk/types.js");

const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";
const MISSING_CAPABILITY = -32021; // MissingRequiredClientCapabilityError
const TASK_TTL = 5 * 60_000;
const ANSWERS = {
  "elicitation/create": T.ElicitResultSchema,
  "sampling/createMessage": T.CreateMessageResultSchema,
  "roots/list": T.ListRootsResultSchema,
};

const text = (t) => ({ content: [{ type: "text", text: t }] });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const object = (properties = {}, required) => ({ type: "object", properties, ...(required && { required }) });
const form = (message, properties, required) => ({ message, requestedSchema: object(properties, required) });
const said = (r) => [r.content].flat().map((c) => c.text ?? `[${c.type}]`).join(" ");
const answered = (r) => `action=${r.action}, content=${JSON.stringify(r.content ?? {})}`;
const roots = (r) => r.roots.map((root) => root.uri).join(", ");
const user = (content) => ({ role: "user", content });
const rpcError = (code, message, data) => new T.McpError(code, message, data);

// What the suite's list-mutation hooks (test_trigger_tool_change, test_trigger_prompt_change)
// toggle: each call adds or removes test_dynamic_tool / test_dynamic_prompt and tells every
// session (the gateway listens on its own).
const dynamic = { tool: false, prompt: false };
const sessions = new Set(); // every live session's Server, told about list changes
// One task store and message queue for all sessions (each task belongs to its session).
const taskStore = new InMemoryTaskStore();
const taskMessageQueue = new InMemoryTaskMessageQueue();

// Questions several tools ask.
const nameQuestion = form("What is your name?", { name: { type: "string", description: "Your name" } }, ["name"]);
const capitalQuestion = {
  messages: [{ role: "user", content: { type: "text", text: "What is the capital of France?" } }],
  maxTokens: 100,
};

async function logThree(c) {
  for (const [i, data] of ["Tool execution started", "Tool processing data", "Tool execution completed"].entries()) {
    if (i > 0) await sleep(50);
    await c.notify("notifications/message", { level: "info", logger: "fixture", data });
  }
  return text("Logged three messages");
}

async function toggle(what) {
  dynamic[what] = !dynamic[what];
  for (const s of sessions) {
    await (what === "tool" ? s.sendToolListChanged() : s.sendPromptListChanged()).catch(() => {});
  }
  return text(`test_dynamic_${what} is now ${dynamic[what] ? "listed" : "gone"}`);
}

// The tools, in the order tools/list gives them. `run(args, c)` gets a context `c` with
// `ask(method, params)`, `notify(method, params)`, `cancelled()`, the session's Server `low`
// and the call's `extra`; `task` is the tool's execution.taskSupport.
const TOOLS = {
  test_simple_text: { run: () => text("This is a simple text response for testing.") },
  test_image_content: { run: () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] }) },
  test_audio_content: { run: () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] }) },
  test_embedded_resource: {
    run: () => ({
      content: [{ type: "resource", resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } }],
    }),
  },
  test_multiple_content_types: {
    run: () => ({
      content: [
        { type: "text", text: "Multiple content types test:" },
        { type: "image", data: PNG, mimeType: "image/png" },
        { type: "resource", resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: '{"test":"data","value":123}' } },
      ],
    }),
  },
  test_tool_with_progress: {
    run: async (_a, c) => {
      const token = c.extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (token !== undefined) await c.notify("notifications/progress", { progressToken: token, progress, total: 100 });
        if (progress < 100) await sleep(50);
      }
      return text("Progress test completed");
    },
  },
  test_tool_with_logging: { run: (_a, c) => logThree(c) },
  test_logging_tool: { run: (_a, c) => logThree(c) },
  test_error_handling: { run: () => ({ isError: true, ...text("This tool intentionally returns an error for testing") }) },
  test_sampling: {
    inputSchema: object({ prompt: { type: "string" } }, ["prompt"]),
    run: async ({ prompt }, c) => {
      const r = await c.ask("sampling/createMessage", { messages: [{ role: "user", content: { type: "text", text: prompt } }], maxTokens: 100 });
      return text(`LLM response: ${said(r)}`);
    },
  },
  test_elicitation: {
    inputSchema: object({ message: { type: "string" } }, ["message"]),
    run: async ({ message }, c) => {
      const question = form(message, {
        username: { type: "string", description: "User's response" },
        email: { type: "string", description: "User's email address" },
      }, ["username", "email"]);
      return text(`User response: ${answered(await c.ask("elicitation/create", question))}`);
    },
  },
  test_elicitation_sep1034_defaults: {
    run: async (_a, c) => {
      const question = form("Please review your information", {
        name: { type: "string", default: "John Doe" },
        age: { type: "integer", default: 30 },
        score: { type: "number", default: 95.5 },
        status: { type: "string", enum: ["active", "inactive", "pending"], default: "active" },
        verified: { type: "boolean", default: true },
      });
      return text(`Elicitation completed: ${answered(await c.ask("elicitation/create", question))}`);
    },
  },
  test_elicitation_sep1330_enums: {
    run: async (_a, c) => {
      const titled = (title, n) => ({ const: `value${n}`, title: `${title} ${["", "First", "Second", "Third"][n]}` });
      const question = form("Please pick your options", {
        untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
        titledSingle: { type: "string", oneOf: [1, 2, 3].map((n) => titled("Option", n)) },
        legacyEnum: { type: "string", enum: ["opt1", "opt2", "opt3"], enumNames: ["Option One", "Option Two", "Option Three"] },
        untitledMulti: { type: "array", items: { type: "string", enum: ["option1", "option2", "option3"] } },
        titledMulti: { type: "array", items: { anyOf: [1, 2, 3].map((n) => titled("Choice", n)) } },
      });
      return text(`Elicitation completed: ${answered(await c.ask("elicitation/create", question))}`);
    },
  },
  test_streaming_elicitation: {
    run: async (_a, c) => {
      const question = form("Streaming elicitation test: say something", { response: { type: "string" } }, ["response"]);
      return text(`Elicitation completed: ${answered(await c.ask("elicitation/create", question))}`);
    },
  },
  test_missing_capability: {
    description: "Needs the client's sampling capability; without it answers -32021",
    run: async (_a, c) => {
      if (!c.low.getClientCapabilities()?.sampling) {
        throw rpcError(MISSING_CAPABILITY, "Missing required client capability: sampling", { requiredCapabilities: { sampling: {} } });
      }
      return text(`LLM response: ${said(await c.ask("sampling/createMessage", capitalQuestion))}`);
    },
  },
  test_custom_headers: {
    description: "Echoes its arguments; `region` is mirrored in the Mcp-Param-Region header",
    inputSchema: object({
      region: { type: "string", description: "A cloud region", "x-mcp-header": "Region" },
      priority: { type: "integer", description: "A priority", "x-mcp-header": "Priority" },
    }, ["region"]),
    run: (args) => text(`Custom headers: ${JSON.stringify(args)}`),
  },
  json_schema_2020_12_tool: {
    description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: { address: { $anchor: "addressDef", type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
      properties: {
        name: { type: "string" },
        address: { $ref: "#/$defs/address" },
        contactMethod: { type: "string", enum: ["phone", "email"] },
        phone: { type: "string" },
        email: { type: "string" },
      },
      allOf: [{ anyOf: [{ required: ["phone"] }, { required: ["email"] }] }],
      if: { properties: { contactMethod: { const: "phone" } }, required: ["contactMethod"] },
      then: { required: ["phone"] },
      else: { required: ["email"] },
      additionalProperties: false,
    },
    run: (args) => text(`Received: ${JSON.stringify(args)}`),
  },
  test_trigger_tool_change: { run: () => toggle("tool") },
  test_trigger_prompt_change: { run: () => toggle("prompt") },
  test_dynamic_tool: { hidden: () => !dynamic.tool, run: () => text("I come and go") },

  // SEP-2322 (InputRequiredResult) scenarios: ordinary tools that ask mid-call.
  test_input_required_result_elicitation: {
    run: async (_a, c) => {
      const r = await c.ask("elicitation/create", nameQuestion);
      return text(r.action === "accept" ? `Hello, ${r.content?.name}!` : `No name given (${r.action})`);
    },
  },
  test_input_required_result_sampling: {
    run: async (_a, c) => text(`Sampling answered: ${said(await c.ask("sampling/createMessage", capitalQuestion))}`),
  },
  test_input_required_result_list_roots: {
    run: async (_a, c) => text(`Client roots: ${roots(await c.ask("roots/list", {}))}`),
  },
  test_input_required_result_request_state: {
    run: async (_a, c) => {
      const r = await c.ask("elicitation/create", form("Please confirm", { ok: { type: "boolean" } }, ["ok"]));
      return text(`state-ok: ${answered(r)}`);
    },
  },
  test_input_required_result_multiple_inputs: {
    run: async (_a, c) => {
      // Asked together, so one InputRequiredResult carries all three.
      const [name, greeting, client] = await Promise.all([
        c.ask("elicitation/create", form("What is your name?", { name: { type: "string" } }, ["name"])),
        c.ask("sampling/createMessage", { messages: [{ role: "user", content: { type: "text", text: "Generate a greeting" } }], maxTokens: 50 }),
        c.ask("roots/list", {}),
      ]);
      return text(`name: ${name.content?.name}; greeting: ${said(greeting)}; roots: ${roots(client)}`);
    },
  },
  test_input_required_result_multi_round: {
    run: async (_a, c) => {
      // One question, then another once the first is answered: two rounds.
      const step1 = await c.ask("elicitation/create", form("Step 1: What is your name?", { name: { type: "string" } }, ["name"]));
      const step2 = await c.ask("elicitation/create", form("Step 2: What is your favorite color?", { color: { type: "string" } }, ["color"]));
      return text(`${step1.content?.name}'s favorite color is ${step2.content?.color}`);
    },
  },
  test_input_required_result_tampered_state: {
    run: async (_a, c) => text(`Confirmed: ${answered(await c.ask("elicitation/create", form("Please confirm", { ok: { type: "boolean" } }, ["ok"])))}`),
  },
  test_input_required_result_capabilities: {
    description: "Asks only what the client declared (sampling, elicitation, roots)",
    run: async (_a, c) => {
      const caps = c.low.getClientCapabilities() ?? {};
      const asks = [];
      if (caps.sampling) asks.push(c.ask("sampling/createMessage", capitalQuestion).then((r) => `sampling: ${said(r)}`));
      if (caps.elicitation) asks.push(c.ask("elicitation/create", nameQuestion).then((r) => `elicitation: ${answered(r)}`));
      if (caps.roots) asks.push(c.ask("roots/list", {}).then((r) => `roots: ${roots(r)}`));
      return text(`Asked what the client declared: ${(await Promise.all(asks)).join("; ") || "nothing"}`);
    },
  },

  // Tasks-extension fixtures (see the header for how each maps to 2025-11-25 tasks).
  greet: {
    inputSchema: object({ name: { type: "string" } }, ["name"]),
    run: ({ name }) => text(`Hello, ${name}!`),
  },
  slow_compute: {
    task: "optional",
    inputSchema: object({ seconds: { type: "number", minimum: 0 }, label: { type: "string" } }, ["seconds"]),
    run: async ({ seconds = 0, label = "" }, c) => {
      for (const end = Date.now() + seconds * 1000; Date.now() < end; await sleep(Math.min(100, end - Date.now()))) {
        if (await c.cancelled()) return text(`Cancelled ${label}`);
      }
      return text(`Computed ${label} in ${seconds}s`);
    },
  },
  failing_job: {
    task: "required",
    run: async () => {
      await sleep(1000);
      return { isError: true, ...text("failing_job failed, as it always does") };
    },
  },
  protocol_error_job: {
    task: "optional",
    run: async () => {
      throw rpcError(T.ErrorCode.InternalError, "protocol_error_job crashed, as it always does");
    },
  },
  confirm_delete: {
    task: "optional",
    inputSchema: object({ filename: { type: "string" } }, ["filename"]),
    run: async ({ filename }, c) => {
      const r = await c.ask("elicitation/create", form(`Delete ${filename}?`, { confirm: { type: "boolean" } }, ["confirm"]));
      return text(r.action === "accept" && r.content?.confirm ? `Deleted ${filename}` : `Kept ${filename}`);
    },
  },
  multi_input: {
    task: "optional",
    run: async (_a, c) => {
      const [first, second] = await Promise.all(
        ["first", "second"].map((k) => c.ask("elicitation/create", form(`The ${k} value?`, { value: { type: "string" } }, ["value"]))),
      );
      return text(`Got ${first.content?.value} and ${second.content?.value}`);
    },
  },
  test_tool_with_task: {
    task: "required",
    run: async (_a, c) => {
      const r = await c.ask("elicitation/create", nameQuestion);
      return text(`Hello, ${r.content?.name ?? "nobody"}!`);
    },
  },
};

// Runs `tool` as a 2025-11-25 task: answers CreateTaskResult at once and works on. What it
// asks is queued for the client's tasks/result stream (related-task metadata) while the task
// is input_required.
async function startTask(low, tool, args, extra) {
  const store = extra.taskStore;
  const task = await store.createTask({ ttl: extra.taskRequestedTtl ?? TASK_TTL, pollInterval: 500 });
  const { taskId } = task;
  let asking = 0;
  const c = {
    low,
    extra,
    ask: async (method, params) => {
      if (asking++ === 0) await store.updateTaskStatus(taskId, "input_required");
      try {
        return await low.request({ method, params }, ANSWERS[method], { relatedTask: { taskId }, timeout: TASK_TTL });
      } finally {
        if (--asking === 0) await store.updateTaskStatus(taskId, "working").catch(() => {});
      }
    },
    notify: (method, params) => low.notification({ method, params }, { relatedTask: { taskId } }),
    cancelled: async () => (await store.getTask(taskId).catch(() => null))?.status === "cancelled",
  };
  (async () => {
    try {
      const result = await tool.run(args, c);
      await store.storeTaskResult(taskId, result.isError ? "failed" : "completed", result);
    } catch (e) {
      await store.updateTaskStatus(taskId, "failed", `${e.message ?? e}`);
    }
  })().catch(() => {}); // cancelled meanwhile: the task stays cancelled
  return { task };
}

const PROMPTS = {
  test_simple_prompt: { run: () => [user({ type: "text", text: "This is a simple prompt for testing." })] },
  test_prompt_with_arguments: {
    arguments: [{ name: "arg1", description: "First test argument", required: true }, { name: "arg2", description: "Second test argument", required: true }],
    run: ({ arg1, arg2 }) => [user({ type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` })],
  },
  test_prompt_with_embedded_resource: {
    arguments: [{ name: "resourceUri", description: "URI of the resource to embed", required: true }],
    run: ({ resourceUri }) => [
      user({ type: "resource", resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } }),
      user({ type: "text", text: "Please process the embedded resource above." }),
    ],
  },
  test_prompt_with_image: {
    run: () => [user({ type: "image", data: PNG, mimeType: "image/png" }), user({ type: "text", text: "Please analyze the image above." })],
  },
  test_input_required_result_prompt: {
    description: "Asks the client (elicitation) for the context to use",
    run: async (_a, extra) => {
      const question = form("What context should the prompt use?", { context: { type: "string" } }, ["context"]);
      const r = await extra.sendRequest({ method: "elicitation/create", params: question }, T.ElicitResultSchema);
      return [user({ type: "text", text: `Use this context: ${r.content?.context ?? "(none)"}` })];
    },
  },
  test_dynamic_prompt: { hidden: () => !dynamic.prompt, run: () => [user({ type: "text", text: "I come and go" })] },
};

const RESOURCES = [
  { uri: "test://static-text", name: "static-text", description: "A static text resource", mimeType: "text/plain", text: "This is the content of the static text resource." },
  { uri: "test://static-binary", name: "static-binary", description: "A static binary resource (a PNG)", mimeType: "image/png", blob: PNG },
  { uri: "test://watched-resource", name: "watched-resource", description: "A resource to subscribe to", mimeType: "text/plain", text: "Watch me." },
];
const TEMPLATE = /^test:\/\/template\/([^/]+)\/data$/;

function makeServer() {
  const low = new Server(
    { name: "conformance-fixture-server", version: "1.0.0" },
    {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        completions: {},
        logging: {},
        tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
      },
      taskStore,
      taskMessageQueue,
    },
  );
  const shown = (table) => Object.entries(table).filter(([, e]) => !e.hidden?.());

  low.setRequestHandler(T.ListToolsRequestSchema, () => ({
    tools: shown(TOOLS).map(([name, t]) => ({
      name,
      description: t.description ?? `Conformance fixture ${name}`,
      inputSchema: t.inputSchema ?? object(),
      ...(t.task && { execution: { taskSupport: t.task } }),
    })),
  }));
  low.setRequestHandler(T.CallToolRequestSchema, async ({ params }, extra) => {
    const { name, arguments: args = {}, task } = params;
    const tool = TOOLS[name];
    if (!tool || tool.hidden?.()) throw rpcError(T.ErrorCode.InvalidParams, `Tool ${name} not found`);
    if (task && !tool.task) throw rpcError(T.ErrorCode.MethodNotFound, `Tool ${name} does not run as a task`);
    if (!task && tool.task === "required") throw rpcError(T.ErrorCode.MethodNotFound, `Tool ${name} runs only as a task`);
    if (task) return startTask(low, tool, args, extra);
    return tool.run(args, {
      low,
      extra,
      ask: (method, askParams) => extra.sendRequest({ method, params: askParams }, ANSWERS[method]),
      notify: (method, notifyParams) => extra.sendNotification({ method, params: notifyParams }),
      cancelled: async () => extra.signal.aborted,
    });
  });

  low.setRequestHandler(T.ListPromptsRequestSchema, () => ({
    prompts: shown(PROMPTS).map(([name, p]) => ({ name, description: p.description ?? `Conformance fixture ${name}`, arguments: p.arguments })),
  }));
  low.setRequestHandler(T.GetPromptRequestSchema, async ({ params }, extra) => {
    const prompt = PROMPTS[params.name];
    if (!prompt || prompt.hidden?.()) throw rpcError(T.ErrorCode.InvalidParams, `Prompt ${params.name} not found`);
    return { messages: await prompt.run(params.arguments ?? {}, extra) };
  });
  low.setRequestHandler(T.CompleteRequestSchema, ({ params }) => {
    const words = params.ref.name === "test_prompt_with_arguments" ? ["paris", "park", "party"] : [];
    const values = words.filter((w) => w.startsWith(params.argument.value ?? ""));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  low.setRequestHandler(T.ListResourcesRequestSchema, () => ({
    resources: RESOURCES.map(({ uri, name, description, mimeType }) => ({ uri, name, description, mimeType })),
  }));
  low.setRequestHandler(T.ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [{ uriTemplate: "test://template/{id}/data", name: "template-data", description: "Data for an id", mimeType: "application/json" }],
  }));
  low.setRequestHandler(T.ReadResourceRequestSchema, ({ params: { uri } }) => {
    const fixed = RESOURCES.find((r) => r.uri === uri);
    if (fixed) return { contents: [{ uri, mimeType: fixed.mimeType, ...(fixed.blob ? { blob: fixed.blob } : { text: fixed.text }) }] };
    const id = TEMPLATE.exec(uri)?.[1];
    if (id) return { contents: [{ uri, mimeType: "application/json", text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] };
    throw rpcError(T.ErrorCode.InvalidParams, "Resource not found", { uri });
  });
  low.setRequestHandler(T.SubscribeRequestSchema, () => ({}));
  low.setRequestHandler(T.UnsubscribeRequestSchema, () => ({}));
  return low;
}

serveSessions({
  sdk: { StreamableHTTPServerTransport, isInitializeRequest: T.isInitializeRequest },
  port,
  open: () => {
    const low = makeServer();
    sessions.add(low);
    return low;
  },
  onClose: (low) => sessions.delete(low),
  hosts: ["127.0.0.1", "localhost", "[::1]"],
});
