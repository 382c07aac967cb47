"""The OpenAI-facing side: request parsing, dispatch, one stream driver with a writer per
answer shape (chat, Responses), tool turns, SSE."""
