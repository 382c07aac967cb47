// The official openai Node SDK against the gateway: chat completions and the Responses API.
import OpenAI from 'openai';
import { MODEL, WEATHER_PARAMS, WEATHER_SCHEMA, getWeather, main } from './_driver.mjs';

const client = (baseURL, apiKey) => new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const CHAT_TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: WEATHER_PARAMS } },
];
const RESPONSES_TOOLS = [
  { type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: WEATHER_PARAMS, strict: true },
];
const FORMAT = { type: 'json_schema', name: 'weather', schema: WEATHER_SCHEMA, strict: true };

await main({
  'chat.plain': async (url, key) => {
    const r = await client(url, key).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello' }] });
    return { text: r.choices[0].message.content };
  },
  'chat.stream': async (url, key) => {
    const pieces = [];
    const stream = await client(url, key).chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Count' }], stream: true,
    });
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) pieces.push(piece);
    }
    return { text: pieces.join(''), pieces };
  },
  'chat.multi_turn': async (url, key) => {
    const c = client(url, key);
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'My name is Ada.' }];
    const first = (await c.chat.completions.create({ model: MODEL, messages })).choices[0].message.content;
    messages.push({ role: 'assistant', content: first }, { role: 'user', content: 'What is my name?' });
    const second = (await c.chat.completions.create({ model: MODEL, messages })).choices[0].message.content;
    return { texts: [first, second] };
  },
  'chat.tools': async (url, key) => {
    const c = client(url, key);
    const messages = [{ role: 'user', content: 'Weather in Paris?' }];
    const first = await c.chat.completions.create({ model: MODEL, messages, tools: CHAT_TOOLS });
    const msg = first.choices[0].message;
    messages.push(msg);
    const calls = [];
    for (const call of msg.tool_calls ?? []) {
      const args = JSON.parse(call.function.arguments);
      calls.push({ name: call.function.name, args });
      messages.push({ role: 'tool', tool_call_id: call.id, content: getWeather(args.city) });
    }
    const final = await c.chat.completions.create({ model: MODEL, messages, tools: CHAT_TOOLS });
    return { calls, text: final.choices[0].message.content };
  },
  'chat.structured': async (url, key) => {
    const r = await client(url, key).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Paris as JSON' }],
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: WEATHER_SCHEMA, strict: true } },
    });
    return { parsed: JSON.parse(r.choices[0].message.content) };
  },
  'responses.plain': async (url, key) => {
    const r = await client(url, key).responses.create({ model: MODEL, input: 'Say hello' });
    return { text: r.output_text };
  },
  'responses.stream': async (url, key) => {
    const pieces = [];
    const types = [];
    const stream = client(url, key).responses.stream({ model: MODEL, input: 'Count' });
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') pieces.push(event.delta);
    }
    const final = await stream.finalResponse();
    return { text: final.output_text, pieces, events: types };
  },
  'responses.multi_turn': async (url, key) => {
    const c = client(url, key);
    const first = await c.responses.create({ model: MODEL, instructions: 'Be brief.', input: 'My name is Ada.' });
    const second = await c.responses.create({ model: MODEL, input: 'What is my name?', previous_response_id: first.id });
    return { texts: [first.output_text, second.output_text] };
  },
  'responses.tools': async (url, key) => {
    const c = client(url, key);
    const first = await c.responses.create({ model: MODEL, input: 'Weather in Paris?', tools: RESPONSES_TOOLS });
    const calls = [];
    const outputs = [];
    for (const item of first.output) {
      if (item.type !== 'function_call') continue;
      const args = JSON.parse(item.arguments);
      calls.push({ name: item.name, args });
      outputs.push({ type: 'function_call_output', call_id: item.call_id, output: getWeather(args.city) });
    }
    const final = await c.responses.create({ model: MODEL, previous_response_id: first.id, input: outputs, tools: RESPONSES_TOOLS });
    return { calls, text: final.output_text, echoedTools: first.tools.map((t) => t.name) };
  },
  'responses.structured': async (url, key) => {
    const r = await client(url, key).responses.create({ model: MODEL, input: 'Weather in Paris as JSON', text: { format: FORMAT } });
    return { parsed: JSON.parse(r.output_text) };
  },
});
