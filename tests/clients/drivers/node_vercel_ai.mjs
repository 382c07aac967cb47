// The Vercel AI SDK (ai + @ai-sdk/openai) against the gateway: provider.chat() speaks chat
// completions, provider.responses() the Responses API.
import { createOpenAI } from '@ai-sdk/openai';
import { Output, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import { MODEL, getWeather, main } from './_driver.mjs';

const model = (api, baseURL, apiKey) => {
  const provider = createOpenAI({ baseURL, apiKey });
  return api === 'chat' ? provider.chat(MODEL) : provider.responses(MODEL);
};
const weather = tool({
  description: 'Weather of a city',
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => getWeather(city),
});
const opts = { maxRetries: 0 };

const scenarios = (api) => ({
  [`${api}.plain`]: async (url, key) => {
    const r = await generateText({ model: model(api, url, key), prompt: 'Say hello', ...opts });
    return { text: r.text };
  },
  [`${api}.stream`]: async (url, key) => {
    const pieces = [];
    const errors = [];
    const r = streamText({ model: model(api, url, key), prompt: 'Count', ...opts, onError: ({ error }) => errors.push(String(error)) });
    for await (const piece of r.textStream) pieces.push(piece);
    if (errors.length) throw new Error(errors.join('; '));
    return { text: pieces.join(''), pieces };
  },
  [`${api}.multi_turn`]: async (url, key) => {
    const m = model(api, url, key);
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'My name is Ada.' }];
    const first = await generateText({ model: m, messages, ...opts });
    messages.push(...first.response.messages, { role: 'user', content: 'What is my name?' });
    const second = await generateText({ model: m, messages, ...opts });
    return { texts: [first.text, second.text] };
  },
  [`${api}.tools`]: async (url, key) => {
    const r = await generateText({
      model: model(api, url, key), prompt: 'Weather in Paris?', tools: { get_weather: weather }, stopWhen: stepCountIs(3), ...opts,
    });
    const calls = r.steps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, args: c.input })));
    return { text: r.text, calls };
  },
  [`${api}.structured`]: async (url, key) => {
    const r = await generateText({
      model: model(api, url, key),
      prompt: 'Weather in Paris as JSON',
      output: Output.object({ schema: z.object({ city: z.string(), celsius: z.number().int() }) }),
      ...opts,
    });
    return { parsed: r.output };
  },
});

await main({ ...scenarios('chat'), ...scenarios('responses') });
