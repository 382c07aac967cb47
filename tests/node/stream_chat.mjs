// Drive codexpool with the official openai Node SDK, as a Node application would.
//
//   node tests/node/stream_chat.mjs <baseURL> <apiKey>
//
// Runs a streamed chat completion (with the usage chunk), a non-streamed one, models.list()
// and a bad-key request, checks what an SDK user relies on, and prints one JSON summary on
// stdout. Exits 1 (still printing JSON, with "failures") when a check fails, 2 on bad usage.
// tests/test_node_client_e2e.py compares the summary with what the fake backend was told to say.

import OpenAI from "openai";
import { VERSION as sdkVersion } from "openai/version";

const [baseURL, apiKey] = process.argv.slice(2);
if (!baseURL || !apiKey) {
  console.error("usage: node stream_chat.mjs <baseURL> <apiKey>");
  process.exit(2);
}

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const summary = { sdkVersion, node: process.version };

async function streamed() {
  const stream = await client.chat.completions.create({
    model: "codex",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Count for the Node test" },
    ],
    stream: true,
    stream_options: { include_usage: true },
  });
  const pieces = [];
  let usage = null;
  let finishReason = null;
  let chunks = 0;
  const ids = new Set();
  for await (const chunk of stream) {
    chunks += 1;
    ids.add(chunk.id);
    check(chunk.object === "chat.completion.chunk", `chunk object is ${chunk.object}`);
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta?.content) pieces.push(choice.delta.content);
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
  }
  check(pieces.length >= 2, `only ${pieces.length} content chunks: not really streamed`);
  check(usage !== null, "no usage chunk despite stream_options.include_usage");
  check(finishReason === "stop", `finish_reason ${finishReason}`);
  check(ids.size === 1, `chunks carry ${ids.size} different ids`);
  return { text: pieces.join(""), pieces, chunks, finishReason, usage };
}

async function nonStreamed() {
  const done = await client.chat.completions.create({
    model: "codex",
    messages: [{ role: "user", content: "Answer plainly" }],
  });
  check(done.object === "chat.completion", `object is ${done.object}`);
  check(done.choices.length === 1, `${done.choices.length} choices`);
  const usage = done.usage;
  check(
    usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
    "usage totals do not add up",
  );
  return {
    text: done.choices[0]?.message?.content ?? null,
    role: done.choices[0]?.message?.role ?? null,
    finishReason: done.choices[0]?.finish_reason ?? null,
    usage,
  };
}

async function models() {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  check(ids.length > 0, "models.list() is empty");
  return ids;
}

async function badKey() {
  const bad = new OpenAI({ baseURL, apiKey: "sk-test-not-a-real-key", maxRetries: 0 });
  try {
    await bad.chat.completions.create({
      model: "codex",
      messages: [{ role: "user", content: "hi" }],
    });
  } catch (err) {
    check(err instanceof OpenAI.AuthenticationError, `bad key raised ${err?.constructor?.name}`);
    return {
      name: err?.constructor?.name ?? null,
      isAuthenticationError: err instanceof OpenAI.AuthenticationError,
      status: err?.status ?? null,
      code: err?.code ?? null,
      type: err?.type ?? null,
      param: err?.param ?? null,
      body: err?.error ?? null,
      errorSource: err?.headers?.get?.("x-codexpool-error-source") ?? null,
    };
  }
  check(false, "a bad key was accepted");
  return null;
}

try {
  summary.stream = await streamed();
  summary.nonStream = await nonStreamed();
  summary.models = await models();
  summary.badKey = await badKey();
} catch (err) {
  failures.push(`unexpected ${err?.constructor?.name}: ${err?.message ?? err}`);
}
summary.failures = failures;
summary.ok = failures.length === 0;
process.stdout.write(JSON.stringify(summary) + "\n");
process.exitCode = summary.ok ? 0 : 1;
