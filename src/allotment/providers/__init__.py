"""Provider responses to allotment ``Usage``, for callers that skip the proxy.

A provider's usage cannot go to ``commit`` as it is. OpenAI names its figures
``prompt_tokens`` and ``completion_tokens``, which ``parse_usage`` refuses.
Anthropic (and Bedrock's Converse) report cache reads and writes *outside*
``input_tokens``, and xAI reports reasoning outside ``completion_tokens``.
allotment counts every input token in ``input_tokens`` and every output token
in ``output_tokens``, so passing those figures through undercounts.

Each usage shape is data (``shapes.py``), read by one small engine
(``read.py``). A usage is matched to a shape by its fields, so
OpenAI-compatible providers (Azure, Groq, Mistral, DeepSeek, Together,
OpenRouter, xAI) and Claude on Bedrock or Vertex need no entries of their
own. A figure no shape reads is refused, never dropped.

genai-prices' ``extract_usage`` covers the same shapes but is not used. It
needs the API flavour (chat, responses, embeddings) named up front, and its
required ``input_tokens`` fails on Anthropic ``message_delta`` events. It
knows no stream envelopes (``message.usage``, ``response.usage``) and no
transcription usage. It accepts float token counts and ignores figures it
does not know. ``tests/unit/test_usage_from.py`` checks that both give the
same figures where both apply.
"""

from allotment.providers.read import StreamUsage, usage_from

__all__ = ["StreamUsage", "usage_from"]
