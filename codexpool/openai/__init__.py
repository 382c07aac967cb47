"""The OpenAI-facing side: request parsing, chunks, chat and Responses answers, dispatch, tool turns, SSE."""
