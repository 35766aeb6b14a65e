"""LLM providers behind one small interface: ``sim`` (offline, the default), ``openai`` and ``anthropic``."""
