// What every Node driver of the client suite shares (the twin of _driver.py): argv, the
// weather function, one JSON line per scenario. `node <driver>.mjs BASE_URL API_KEY` reads
// scenario names from stdin, one a line, and answers each with its JSON line.
import { createInterface } from 'node:readline';

export const MODEL = 'gpt-5.5';
export const WEATHER_PARAMS = {
  type: 'object',
  properties: { city: { type: 'string' } },
  required: ['city'],
  additionalProperties: false,
};
export const WEATHER_SCHEMA = {
  type: 'object',
  properties: { city: { type: 'string' }, celsius: { type: 'integer' } },
  required: ['city', 'celsius'],
  additionalProperties: false,
};

export function getWeather(city) {
  return `18C in ${city}`;
}

export async function main(scenarios) {
  const [baseURL, apiKey, one] = process.argv.slice(2);
  const run = async (name) => {
    try {
      return JSON.stringify({ ok: true, ...(await scenarios[name](baseURL, apiKey)) });
    } catch (err) {
      return JSON.stringify({
        ok: false,
        error: `${err?.name}: ${err?.message}`,
        error_type: err?.constructor?.name,
        status: err?.status ?? err?.statusCode ?? null,
        body: err?.error ?? err?.responseBody ?? null,
        traceback: String(err?.stack ?? '').slice(-3000),
      });
    }
  };
  if (one) {
    console.log(await run(one));
    return;
  }
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim()) console.log(await run(line.trim()));
  }
}
