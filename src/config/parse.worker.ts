/**
 * The worker thread behind `createOffThreadParser`: parses each file it is sent and posts the
 * `ParseResult` back. It says "ready" once loaded, so the parent's time limit covers only the parse.
 */
import { parentPort } from "node:worker_threads";
import type { ParseJob, WorkerMessage } from "./offthread.ts";
import { parseEnvironment } from "./parse.ts";

if (parentPort === null) throw new Error("the environment-file parse worker runs in a worker thread, not as a module to import");
const port = parentPort;
port.on("message", (job: ParseJob) => {
  const reply: WorkerMessage = { id: job.id, result: parseEnvironment(job.source, job.fileName) };
  port.postMessage(reply);
});
const ready: WorkerMessage = { ready: true };
port.postMessage(ready);
