/**
 * One fetch wrapper: JSON in and out, OpenAI-shaped errors turned into exceptions.
 */

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {string|null} code
   */
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Call a JSON route of this server.
 * @param {string} method
 * @param {string} path
 * @param {object} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached.", "network_error");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = data?.error || {};
    throw new ApiError(resp.status, err.message || `HTTP ${resp.status}`, err.code || null);
  }
  return data;
}

/**
 * POST and read an SSE stream of chat.completion.chunk objects, calling onText per delta.
 * @param {string} path
 * @param {object} body
 * @param {(text: string) => void} onText
 * @returns {Promise<void>}
 */
export async function streamChat(path, body, onText) {
  const resp = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!resp.ok || !resp.body) {
    let message = `HTTP ${resp.status}`;
    try {
      const data = await resp.json();
      message = data.error.message || message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, message, null);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const payload = line.slice(6);
        if (payload === "[DONE]") return;
        const chunk = JSON.parse(payload);
        if (chunk.error) throw new ApiError(502, chunk.error.message, chunk.error.code);
        const delta = chunk.choices?.[0]?.delta;
        if (delta?.content) onText(delta.content);
      }
    }
  }
}
