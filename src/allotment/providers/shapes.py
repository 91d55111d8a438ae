"""The usage shapes providers report, as data.

A new shape, or a figure a provider adds, is a row here, not code. Rows
naming the same field add up; a row reads the first of its paths that is
present. OpenAI's counts include their details (cached, audio, reasoning);
Anthropic's and Bedrock Converse's ``input_tokens`` exclude cache reads and
writes, so those rows add them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ANTHROPIC_PROVIDERS", "FIGURE_SUFFIXES", "ROOTS", "SHAPES", "Path", "Shape"]

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shape:
    """One way a provider reports usage: which fields, and where each figure sits.

    Attributes:
        name: for people reading the table.
        family: ``openai`` or ``anthropic``, the provider names it wins ties for.
        required: top-level fields a usage must have to be read this way.
        rows: ``(usage field, path, alternative path, ...)``, dotted paths
            inside the usage object; ``audio_seconds`` rows read seconds into
            ``audio_ms``.
        ignored: top-level figures this shape knows and deliberately skips.
        total: the usage's grand total, which shows whether reasoning was
            reported outside the output count.
        kind: the usage's own ``type`` literal, when it has one.
        event: the stream event type this shape is limited to, if any.
    """

    name: str
    family: str
    required: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    ignored: tuple[str, ...] = ()
    total: str | None = None
    kind: str | None = None
    event: str | None = None
    reads: tuple[tuple[str, tuple[Path, ...]], ...] = field(init=False)
    paths: frozenset[Path] = field(init=False)
    known: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        reads = tuple((f, tuple(tuple(p.split(".")) for p in alts)) for f, *alts in self.rows)
        paths = frozenset(path for _, alternatives in reads for path in alternatives)
        known = {path[0] for path in paths} | set(self.ignored)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "known", frozenset(known))


_ANTHROPIC = (
    ("input_tokens", "input_tokens"),
    ("input_tokens", "cache_read_input_tokens"),
    ("input_tokens", "cache_creation_input_tokens"),
    ("cached_input_tokens", "cache_read_input_tokens"),
    ("cache_write_tokens", "cache_creation_input_tokens"),
    ("output_tokens", "output_tokens"),
    ("reasoning_tokens", "output_tokens_details.thinking_tokens"),
)

#: every shape, in tie-break order
SHAPES = (
    Shape(
        "OpenAI chat completion",
        "openai",
        required=("prompt_tokens", "completion_tokens"),
        rows=(
            ("input_tokens", "prompt_tokens"),
            (
                "cached_input_tokens",
                "prompt_tokens_details.cached_tokens",
                "prompt_cache_hit_tokens",  # DeepSeek
            ),
            ("cache_write_tokens", "prompt_tokens_details.cache_write_tokens"),
            ("input_audio_tokens", "prompt_tokens_details.audio_tokens"),
            ("output_tokens", "completion_tokens"),
            ("reasoning_tokens", "completion_tokens_details.reasoning_tokens"),
            ("output_audio_tokens", "completion_tokens_details.audio_tokens"),
            ("audio_seconds", "prompt_audio_seconds"),  # Mistral's transcriptions
        ),
        ignored=("total_tokens", "prompt_cache_miss_tokens"),  # DeepSeek: hit + miss = prompt
        total="total_tokens",
    ),
    Shape(
        "OpenAI embeddings",
        "openai",
        required=("prompt_tokens",),
        rows=(("input_tokens", "prompt_tokens"),),
        ignored=("total_tokens",),
        total="total_tokens",
    ),
    Shape(
        "OpenAI transcription (tokens)",
        "openai",
        kind="tokens",
        required=("input_tokens", "output_tokens"),
        rows=(
            ("input_tokens", "input_tokens"),
            ("input_audio_tokens", "input_token_details.audio_tokens"),
            ("output_tokens", "output_tokens"),
        ),
        ignored=("total_tokens",),
        total="total_tokens",
    ),
    Shape(
        "OpenAI transcription (duration)",
        "openai",
        kind="duration",
        required=("seconds",),
        rows=(("audio_seconds", "seconds"),),
    ),
    Shape(
        "OpenAI whisper verbose_json",
        "openai",
        required=("duration",),
        rows=(("audio_seconds", "duration"),),
    ),
    Shape(
        "OpenAI Responses",
        "openai",
        required=("input_tokens", "output_tokens"),
        rows=(
            ("input_tokens", "input_tokens"),
            ("cached_input_tokens", "input_tokens_details.cached_tokens"),
            ("cache_write_tokens", "input_tokens_details.cache_write_tokens"),
            ("output_tokens", "output_tokens"),
            ("reasoning_tokens", "output_tokens_details.reasoning_tokens"),
        ),
        ignored=("total_tokens",),
        total="total_tokens",
    ),
    Shape(
        "Anthropic message",
        "anthropic",
        required=("input_tokens", "output_tokens"),
        rows=_ANTHROPIC,
    ),
    Shape(
        "Anthropic message_delta",
        "anthropic",
        event="message_delta",  # input figures only in newer API versions
        required=("output_tokens",),
        rows=_ANTHROPIC,
    ),
    Shape(
        "Bedrock Converse",
        "anthropic",
        required=("inputTokens", "outputTokens"),
        rows=(
            ("input_tokens", "inputTokens"),
            ("input_tokens", "cacheReadInputTokens"),
            ("input_tokens", "cacheWriteInputTokens"),
            ("cached_input_tokens", "cacheReadInputTokens"),
            ("cache_write_tokens", "cacheWriteInputTokens"),
            ("output_tokens", "outputTokens"),
        ),
        ignored=("totalTokens",),
        total="totalTokens",
    ),
)

#: where a response or stream event keeps its usage, tried in order
ROOTS: tuple[Path, ...] = (
    ("usage",),  # responses, final chat chunks, message_delta, transcriptions
    ("response", "usage"),  # Responses stream: response.completed / incomplete / failed
    ("message", "usage"),  # Anthropic message_start
    ("x_groq", "usage"),  # Groq's final stream chunk
)
#: provider names whose ties go to Anthropic's shapes (every other name: OpenAI's)
ANTHROPIC_PROVIDERS = frozenset({"anthropic", "bedrock", "aws", "vertex", "vertex_ai"})
#: top-level keys that are figures: a usage with one its shape does not read is refused
FIGURE_SUFFIXES = ("tokens", "Tokens", "seconds")
