// The official TypeScript SDK client (npm @modelcontextprotocol/sdk) following tasks the
// session-era way (2025-11-25): it lists tools (so the SDK knows which run as tasks), calls
// slow_compute and confirm_delete through `experimental.tasks.callToolStream` (which adds
// the task augmentation, polls tasks/get and fetches tasks/result, where confirm_delete's
// question arrives and is answered), cancels a long task, and lists its tasks. Prints what
// it saw as one JSON object.
//
// usage: node ts_task_client.mjs NODE_MODULES_DIR URL
import { createRequire } from "node:module";
import path from "node:path";

const [modules, url] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { ElicitRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

const out = { questions: [] };
const client = new Client({ name: "task-client", version: "0" }, { capabilities: { elicitation: {} } });
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  out.questions.push({ message: req.params.message, task: req.params._meta?.["io.modelcontextprotocol/related-task"]?.taskId });
  return { action: "accept", content: { confirm: true } };
});
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
out.tasks_capability = client.getServerCapabilities()?.tasks ?? null;
await client.listTools();

// Runs `name` through the SDK's task stream: the task ids it saw and the result's text.
async function follow(name, args) {
  const seen = { ids: [], statuses: [] };
  for await (const m of client.experimental.tasks.callToolStream({ name, arguments: args })) {
    if (m.type === "taskCreated") seen.ids.push(m.task.taskId);
    if (m.type === "taskStatus") seen.statuses.push(m.task.status);
    if (m.type === "result") seen.text = m.result.content?.[0]?.text;
    if (m.type === "error") seen.error = String(m.error);
  }
  return seen;
}

try {
  out.slow = await follow("slow_compute", { seconds: 1, label: "relayed" });
  out.confirm = await follow("confirm_delete", { filename: "old.txt" });
  const long = await client.experimental.tasks.callToolStream(
    { name: "slow_compute", arguments: { seconds: 60, label: "cancel-me" } },
  ).next();
  const id = long.value?.task?.taskId;
  await client.experimental.tasks.cancelTask(id);
  out.cancelled = (await client.experimental.tasks.getTask(id)).status;
  out.listed = (await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);
} catch (e) {
  out.error = String(e);
}
await client.close();
console.log(JSON.stringify(out));
