// A small Agent Protocol agent built with the reference JS SDK (`agent-protocol`, Express-based),
// for the gateway tests (tests/integration/test_gateway.py): sidekey's api listener forwards every
// /ap/v1/… request other than the secrets endpoints to it.
//
//   node agent.mjs [PORT]          (or AGENT_PORT; 0 or nothing picks a free port)
//
// Environment: AGENT_PORT, AGENT_HOST (default 127.0.0.1), AGENT_WORKSPACE (default ./workspace:
// where the SDK keeps uploaded artifacts, one folder per task), AGENT_UNKNOWN_TASK (see below),
// AGENT_KEEP_ALIVE_MS (how long an idle keep-alive connection stays open; Node's default 5000).
//
// The task handler returns a step handler that echoes the step's input and writes it to an
// artifact of its own (agent_created), which the SDK then serves for download like an upload.
//
// Two gaps of agent-protocol@1.0.5 are filled here, in front of the SDK's Express app:
// - GET /ap/v1/agent/tasks/{task_id}/steps: the SDK answers a bare array of step ids, which its
//   own response validator rejects (500 "/response must be object"); this agent answers the
//   protocol's TaskStepsListResponse {"steps":[Step…],"pagination":{…}} from the SDK's store.
// - A task id the agent does not know: the SDK answers 500 {"error":"Task with id … not found"}
//   on GET /ap/v1/agent/tasks/{task_id} (and its steps); the protocol says 404. With
//   AGENT_UNKNOWN_TASK=404 (the default) this agent answers 404 {"message":"Unable to find task
//   with the provided id"} for /ap/v1/agent/tasks/{unknown}[/…]; AGENT_UNKNOWN_TASK=sdk keeps the
//   SDK's own 500, to see how a gateway copes with an agent as shipped.
//
// When listening it prints one JSON line on stdout: {"event":"agent_listening","port":N}.
//
// Besides the SDK's routes, GET /_test/requests (never under /ap/v1, so sidekey does not forward
// it) returns the method, target and headers of every request the agent received, so a test can
// check what reached the agent (e.g. that sidekey's API token did not). DELETE /_test/requests
// clears the record.
import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const sdk = require("agent-protocol");
const Agent = sdk.default;

const port = Number(process.argv[2] ?? process.env.AGENT_PORT ?? 0);
const host = process.env.AGENT_HOST || "127.0.0.1";
const unknownTask = process.env.AGENT_UNKNOWN_TASK || "404";
const workspace = path.resolve(process.env.AGENT_WORKSPACE || "workspace");
mkdirSync(workspace, { recursive: true });

async function taskHandler(taskId, taskInput) {
  let stepNumber = 0;
  return async (stepInput) => {
    stepNumber += 1;
    const text = `echo: ${stepInput ?? ""}`;
    const fileName = `step-${stepNumber}.txt`;
    // Where the SDK looks for an artifact: WORKSPACE/TASK_ID/RELATIVE_PATH/FILE_NAME.
    const dir = path.join(workspace, taskId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, fileName), text + "\n");
    return {
      name: `echo step ${stepNumber}`,
      output: text,
      artifacts: [{ artifact_id: randomUUID(), agent_created: true, file_name: fileName, relative_path: null }],
      is_last: stepInput === "finish",
    };
  };
}

const app = Agent.handleTask(taskHandler, { workspace, port }).build(port);

function sendJson(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" });
  res.end(JSON.stringify(body));
}

async function taskKnown(taskId) {
  try {
    await sdk.getAgentTask(taskId);
    return true;
  } catch {
    return false;
  }
}

function pageParam(url, key, fallback) {
  const v = Number(url.searchParams.get(key));
  return Number.isInteger(v) && v >= 1 ? v : fallback;
}

async function listSteps(taskId, url, res) {
  const ids = await sdk.listAgentTaskSteps(taskId);
  const steps = await Promise.all(ids.map((id) => sdk.getAgentTaskStep(taskId, id)));
  const page = pageParam(url, "current_page", 1), size = pageParam(url, "page_size", 10);
  sendJson(res, 200, {
    steps: steps.slice((page - 1) * size, page * size),
    pagination: { total_items: steps.length, total_pages: Math.ceil(steps.length / size), current_page: page, page_size: size },
  });
}

const seen = [];
const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://agent");
  if (url.pathname === "/_test/requests") {
    if (req.method === "DELETE") seen.length = 0;
    sendJson(res, 200, seen);
    return;
  }
  seen.push({ method: req.method, url: req.url, headers: req.headers });
  const task = /^\/ap\/v1\/agent\/tasks\/([^/]+)(\/.*)?$/.exec(url.pathname);
  try {
    if (task && unknownTask === "404" && !(await taskKnown(decodeURIComponent(task[1])))) {
      req.resume();
      sendJson(res, 404, { message: "Unable to find task with the provided id" });
      return;
    }
    if (task && task[2] === "/steps" && req.method === "GET" && (await taskKnown(decodeURIComponent(task[1])))) {
      await listSteps(decodeURIComponent(task[1]), url, res);
      return;
    }
  } catch (e) {
    sendJson(res, 500, { message: String(e) });
    return;
  }
  app(req, res);
});
if (process.env.AGENT_KEEP_ALIVE_MS) server.keepAliveTimeout = Number(process.env.AGENT_KEEP_ALIVE_MS);
server.requestTimeout = 0;  // large uploads through a slow path must not be cut off
server.listen(port, host, () => {
  process.stdout.write(JSON.stringify({ event: "agent_listening", port: server.address().port }) + "\n");
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
