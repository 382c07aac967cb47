"""codexpool: an OpenAI-compatible gateway over ChatGPT accounts linked through the Codex CLI."""

__version__ = "0.1.0"
