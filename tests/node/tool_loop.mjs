// A multi-turn conversation with a client function, driven by the official openai Node SDK:
//
//   node tests/node/tool_loop.mjs <baseURL> <apiKey>
//
// Turn 1 asks for the weather (the model calls get_weather), the script answers the call as a
// Node application would, then asks a follow-up question in the same conversation. Prints one
// JSON summary on stdout; tests/test_node_client_e2e.py checks it and what went upstream.

import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
if (!baseURL || !apiKey) {
  console.error("usage: node tool_loop.mjs <baseURL> <apiKey>");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather of a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];
const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Weather in Paris?" },
];
const summary = { turns: [] };
try {
  for (const next of [null, "And tomorrow?"]) {
    if (next) messages.push({ role: "user", content: next });
    for (;;) {
      const done = await client.chat.completions.create({ model: "codex", messages, tools });
      const choice = done.choices[0];
      messages.push(choice.message);
      summary.turns.push({
        finishReason: choice.finish_reason,
        text: choice.message.content,
        calls: (choice.message.tool_calls || []).map((c) => c.function.name),
        usage: done.usage,
      });
      if (choice.finish_reason !== "tool_calls") break;
      for (const call of choice.message.tool_calls) {
        const { city } = JSON.parse(call.function.arguments);
        messages.push({ role: "tool", tool_call_id: call.id, content: `18C in ${city}` });
      }
    }
  }
  summary.ok = true;
} catch (err) {
  summary.ok = false;
  summary.error = String(err);
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
