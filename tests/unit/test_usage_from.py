"""Provider usage counted allotment's way, from the shapes the official SDKs build offline.

Every response is a realistic JSON body. Each test reads it as the SDK's
pydantic object (``model_validate``), as the plain dict an HTTP caller
decodes, and as the usage object alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import anthropic.types as anthropic_types
import pytest
from genai_prices import data_snapshot
from openai.types import CreateEmbeddingResponse
from openai.types.audio import Transcription, TranscriptionVerbose
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseTextDeltaEvent,
)

from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.providers import StreamUsage, usage_from

# --- OpenAI chat completions -------------------------------------------------------------

CHAT_USAGE = {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 32,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
CHAT = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "o4-mini-2025-04-16",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": CHAT_USAGE,
    "service_tier": "default",
    "system_fingerprint": "fp_6ec3ac1a8b",
}
CHAT_EXPECTED = Usage(input_tokens=1117, output_tokens=46, cached_input_tokens=1024,
                      reasoning_tokens=32)  # fmt: skip

AUDIO_CHAT = {
    **CHAT,
    "model": "gpt-4o-audio-preview-2024-12-17",
    "usage": {
        "prompt_tokens": 220,
        "completion_tokens": 150,
        "total_tokens": 370,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 200, "text_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 120},
    },
}

# xAI: reasoning is outside completion_tokens, inside total_tokens (a real grok-4 answer)
XAI_CHAT = {
    **CHAT,
    "model": "grok-4",
    "usage": {
        "prompt_tokens": 10120,
        "completion_tokens": 1499,
        "total_tokens": 14428,
        "prompt_tokens_details": {"cached_tokens": 128, "text_tokens": 10120},
        "completion_tokens_details": {"reasoning_tokens": 2809},
        "num_sources_used": 0,
    },
}

DEEPSEEK_CHAT = {
    **CHAT,
    "model": "deepseek-reasoner",
    "usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_cache_hit_tokens": 800,
        "prompt_cache_miss_tokens": 200,
        "completion_tokens_details": {"reasoning_tokens": 150},
    },
}


def chat_stream() -> list[dict[str, Any]]:
    """A chat completion streamed with ``stream_options={"include_usage": True}``."""
    head = {"id": CHAT["id"], "object": "chat.completion.chunk", "created": CHAT["created"],
            "model": CHAT["model"], "system_fingerprint": CHAT["system_fingerprint"]}  # fmt: skip
    return [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None}], "usage": None},
        {**head, "choices": [{"index": 0, "delta": {"content": "Paris."},
                              "finish_reason": None}], "usage": None},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
        {**head, "choices": [], "usage": CHAT_USAGE},
    ]  # fmt: skip


def test_chat_completion_counts_cached_and_reasoning_inside() -> None:
    assert usage_from("openai", ChatCompletion.model_validate(CHAT)) == CHAT_EXPECTED
    assert usage_from("openai", CHAT) == CHAT_EXPECTED
    assert usage_from("azure", ChatCompletion.model_validate(CHAT).usage) == CHAT_EXPECTED
    assert usage_from("openai", CHAT_USAGE) == CHAT_EXPECTED
    assert usage_from("openai", CHAT).cost_micros is None
    assert usage_from("openai", ChatCompletion.construct(**copy.deepcopy(CHAT))) == CHAT_EXPECTED


def test_chat_completion_with_audio() -> None:
    expected = Usage(input_tokens=220, output_tokens=150, input_audio_tokens=200,
                     output_audio_tokens=120)  # fmt: skip
    assert usage_from("openai", ChatCompletion.model_validate(AUDIO_CHAT)) == expected
    assert usage_from("openai", AUDIO_CHAT) == expected


def test_xai_reasoning_outside_completion_tokens_is_counted_from_the_total() -> None:
    expected = Usage(input_tokens=10120, output_tokens=1499 + 2809, cached_input_tokens=128,
                     reasoning_tokens=2809)  # fmt: skip
    assert usage_from("xai", ChatCompletion.model_validate(XAI_CHAT)) == expected
    assert usage_from("xai", XAI_CHAT) == expected
    assert usage_from("xai", XAI_CHAT).tokens == 14428


def test_deepseek_cache_hits() -> None:
    expected = Usage(input_tokens=1000, output_tokens=200, cached_input_tokens=800,
                     reasoning_tokens=150)  # fmt: skip
    assert usage_from("deepseek", ChatCompletion.model_validate(DEEPSEEK_CHAT)) == expected
    assert usage_from("deepseek", DEEPSEEK_CHAT) == expected


def test_only_a_total_that_matches_the_reasoning_moves_it() -> None:
    """A total that counts something else (here Mistral's audio) changes nothing."""
    body = {"model": "voxtral-mini-latest", "text": "Hello.", "usage": {
        "prompt_audio_seconds": 203, "prompt_tokens": 4, "completion_tokens": 635,
        "total_tokens": 3264}}  # fmt: skip
    expected = Usage(input_tokens=4, output_tokens=635, audio_ms=203_000)
    assert usage_from("mistral", body) == expected
    openai_like = copy.deepcopy(XAI_CHAT)
    openai_like["usage"]["total_tokens"] = 10120 + 1499  # reasoning inside: OpenAI's way
    assert usage_from("openai", openai_like).output_tokens == 1499


@pytest.mark.parametrize("provider", ["groq", "mistral", "together", "openrouter", "some-vllm"])
def test_openai_compatible_providers_are_read_by_shape(provider: str) -> None:
    usage = {"prompt_tokens": 24, "completion_tokens": 377, "total_tokens": 401,
             "queue_time": 0.02, "prompt_time": 0.001, "cost": 0.0004}  # fmt: skip
    plain = {**CHAT, "usage": usage}
    assert usage_from(provider, plain) == Usage(input_tokens=24, output_tokens=377)


def test_the_final_chunk_of_a_chat_stream() -> None:
    chunks = chat_stream()
    assert usage_from("openai", ChatCompletionChunk.model_validate(chunks[-1])) == CHAT_EXPECTED
    assert usage_from("openai", chunks[-1]) == CHAT_EXPECTED
    with pytest.raises(ValidationError) as missing:
        usage_from("openai", ChatCompletionChunk.model_validate(chunks[0]))
    assert missing.value.field == "usage" and "include_usage" in missing.value.message


def test_groq_final_chunk_keeps_usage_under_x_groq() -> None:
    usage = {"prompt_tokens": 24, "completion_tokens": 377, "total_tokens": 401,
             "queue_time": 0.02}  # fmt: skip
    chunk = {**chat_stream()[2], "x_groq": {"id": "req_01", "usage": usage}}
    expected = Usage(input_tokens=24, output_tokens=377)
    assert usage_from("groq", chunk) == expected
    assert usage_from("groq", ChatCompletionChunk.model_validate(chunk)) == expected


# --- OpenAI Responses, embeddings, transcriptions -----------------------------------------

RESPONSE_USAGE = {
    "input_tokens": 2000,
    "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 64},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 128},
    "total_tokens": 2300,
}
RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "model": "o4-mini-2025-04-16",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": RESPONSE_USAGE,
}
RESPONSE_EXPECTED = Usage(input_tokens=2000, output_tokens=300, cached_input_tokens=1536,
                          cache_write_tokens=64, reasoning_tokens=128)  # fmt: skip


def responses_stream() -> list[dict[str, Any]]:
    """A Responses API stream: created, a text delta, completed."""
    running = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    return [
        {"type": "response.created", "sequence_number": 0, "response": running},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
         "output_index": 0, "content_index": 0, "delta": "Paris.", "logprobs": []},
        {"type": "response.completed", "sequence_number": 2, "response": RESPONSE},
    ]  # fmt: skip


RESPONSE_EVENTS = {
    "response.created": ResponseCreatedEvent,
    "response.output_text.delta": ResponseTextDeltaEvent,
    "response.completed": ResponseCompletedEvent,
}


def test_responses_api() -> None:
    assert usage_from("openai", Response.model_validate(RESPONSE)) == RESPONSE_EXPECTED
    assert usage_from("openai", RESPONSE) == RESPONSE_EXPECTED
    assert usage_from("openai", RESPONSE_USAGE) == RESPONSE_EXPECTED


def test_the_completed_event_of_a_responses_stream() -> None:
    completed = responses_stream()[-1]
    assert usage_from("openai", ResponseCompletedEvent.model_validate(completed)) == (
        RESPONSE_EXPECTED
    )
    assert usage_from("openai", completed) == RESPONSE_EXPECTED
    with pytest.raises(ValidationError, match="reports no usage"):
        usage_from("openai", ResponseCreatedEvent.model_validate(responses_stream()[0]))


def test_embeddings() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093, 0.0158]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    assert usage_from("openai", CreateEmbeddingResponse.model_validate(body)) == Usage(
        input_tokens=8
    )
    assert usage_from("openai", body) == Usage(input_tokens=8)


def test_transcription_billed_by_tokens() -> None:
    body = {
        "text": "Imagine the wildest idea that you've ever had.",
        "usage": {
            "type": "tokens",
            "input_tokens": 14,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
            "output_tokens": 45,
            "total_tokens": 59,
        },
    }
    expected = Usage(input_tokens=14, output_tokens=45, input_audio_tokens=14)
    assert usage_from("openai", Transcription.model_validate(body)) == expected
    assert usage_from("openai", body) == expected


def test_transcription_billed_by_duration() -> None:
    body = {"text": "Hello.", "usage": {"type": "duration", "seconds": 9}}
    assert usage_from("openai", Transcription.model_validate(body)) == Usage(audio_ms=9000)
    assert usage_from("openai", body) == Usage(audio_ms=9000)
    fractional = {"text": "Hello.", "usage": {"type": "duration", "seconds": 2.5}}
    assert usage_from("openai", fractional) == Usage(audio_ms=2500)


def test_whisper_verbose_json_duration_rounds_up_to_the_millisecond() -> None:
    body = {
        "task": "transcribe",
        "language": "english",
        "duration": 8.470000267028809,
        "text": "The beach was a popular spot on a hot summer day.",
        "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 3.32, "text": "The beach",
                      "tokens": [50364, 440, 7534], "temperature": 0.0, "avg_logprob": -0.28,
                      "compression_ratio": 1.2, "no_speech_prob": 0.0097}],
    }  # fmt: skip
    assert usage_from("openai", TranscriptionVerbose.model_validate(body)) == Usage(audio_ms=8471)
    assert usage_from("openai", body) == Usage(audio_ms=8471)


# --- Anthropic ----------------------------------------------------------------------------

MESSAGE_USAGE = {
    "input_tokens": 100,
    "cache_creation_input_tokens": 200,
    "cache_read_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 50,
    "service_tier": "standard",
}
MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Paris."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": MESSAGE_USAGE,
}
MESSAGE_EXPECTED = Usage(input_tokens=1300, output_tokens=50, cached_input_tokens=1000,
                         cache_write_tokens=200)  # fmt: skip


def message_stream(delta_usage: dict[str, int]) -> list[dict[str, Any]]:
    """A Messages stream; ``message_start`` carries the input, ``message_delta`` the total."""
    start_usage = {**MESSAGE_USAGE, "output_tokens": 1}
    return [
        {"type": "message_start",
         "message": {**MESSAGE, "content": [], "stop_reason": None, "usage": start_usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Paris."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": delta_usage},
        {"type": "message_stop"},
    ]  # fmt: skip


#: message_delta's usage as older API versions send it, and as newer ones do (cumulative)
OLD_DELTA = {"output_tokens": 50}
NEW_DELTA = {"input_tokens": 100, "cache_creation_input_tokens": 200,
             "cache_read_input_tokens": 1000, "output_tokens": 50}  # fmt: skip

ANTHROPIC_EVENTS = {
    "message_start": anthropic_types.RawMessageStartEvent,
    "content_block_start": anthropic_types.RawContentBlockStartEvent,
    "content_block_delta": anthropic_types.RawContentBlockDeltaEvent,
    "content_block_stop": anthropic_types.RawContentBlockStopEvent,
    "message_delta": anthropic_types.RawMessageDeltaEvent,
    "message_stop": anthropic_types.RawMessageStopEvent,
}


@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "vertex"])
def test_anthropic_cache_reads_and_writes_count_as_input(provider: str) -> None:
    assert usage_from(provider, anthropic_types.Message.model_validate(MESSAGE)) == (
        MESSAGE_EXPECTED
    )
    assert usage_from(provider, MESSAGE) == MESSAGE_EXPECTED
    assert usage_from(provider, anthropic_types.Message.model_validate(MESSAGE).usage) == (
        MESSAGE_EXPECTED
    )
    assert usage_from(provider, MESSAGE_USAGE) == MESSAGE_EXPECTED


def test_anthropic_built_with_construct() -> None:
    message = anthropic_types.Message.construct(**copy.deepcopy(MESSAGE))
    assert usage_from("anthropic", message) == MESSAGE_EXPECTED


def test_anthropic_thinking_tokens_are_reasoning() -> None:
    thinking = {**MESSAGE, "usage": {**MESSAGE_USAGE, "output_tokens_details":
                                     {"thinking_tokens": 30}}}  # fmt: skip
    expected = MESSAGE_EXPECTED._replace(reasoning_tokens=30)
    assert usage_from("anthropic", anthropic_types.Message.model_validate(thinking)) == expected
    assert usage_from("anthropic", thinking) == expected


def test_anthropic_without_caching() -> None:
    plain = {**MESSAGE, "usage": {"input_tokens": 12, "output_tokens": 7}}
    assert usage_from("anthropic", plain) == Usage(input_tokens=12, output_tokens=7)


def test_a_single_anthropic_stream_event_gives_what_it_carries() -> None:
    start, *_, old_delta, _ = message_stream(OLD_DELTA)
    start_expected = MESSAGE_EXPECTED._replace(output_tokens=1)
    assert usage_from("anthropic", anthropic_types.RawMessageStartEvent.model_validate(start)) == (
        start_expected
    )
    assert usage_from("anthropic", start) == start_expected
    event = anthropic_types.RawMessageDeltaEvent.model_validate(old_delta)
    assert usage_from("anthropic", event) == Usage(output_tokens=50)
    assert usage_from("anthropic", message_stream(NEW_DELTA)[-2]) == MESSAGE_EXPECTED


def test_bedrock_converse_reports_cache_outside_input_too() -> None:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Paris."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 100, "outputTokens": 50, "totalTokens": 1350,
                  "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200},
        "metrics": {"latencyMs": 912},
    }  # fmt: skip
    assert usage_from("bedrock", body) == MESSAGE_EXPECTED


def test_the_provider_name_does_not_change_the_reading() -> None:
    """Fields decide the shape, so a mislabelled or unlisted provider is still read right."""
    assert usage_from("openai", MESSAGE) == MESSAGE_EXPECTED
    assert usage_from("anthropic", CHAT) == CHAT_EXPECTED
    assert usage_from("anthropic", RESPONSE) == RESPONSE_EXPECTED


# --- Streams, event by event ------------------------------------------------------------


def fed(provider: str, events: Iterable[object]) -> Usage:
    stream = StreamUsage(provider)
    for event in events:
        stream.add(event)
    return stream.usage


@pytest.mark.parametrize("delta", [OLD_DELTA, NEW_DELTA], ids=["old-delta", "new-delta"])
def test_an_anthropic_stream_adds_up_to_the_message(delta: dict[str, int]) -> None:
    events = message_stream(delta)
    sdk = [ANTHROPIC_EVENTS[e["type"]].model_validate(e) for e in events]
    assert fed("anthropic", sdk) == usage_from("anthropic", MESSAGE) == MESSAGE_EXPECTED
    assert fed("anthropic", events) == MESSAGE_EXPECTED


def test_anthropic_stream_usage_is_cumulative_not_additive() -> None:
    events = message_stream(NEW_DELTA)
    twice = [*events[:-1], events[-2], events[-1]]  # a second delta repeats the totals
    assert fed("anthropic", twice) == MESSAGE_EXPECTED


def test_a_client_gone_after_message_start_is_billed_for_what_was_seen() -> None:
    assert fed("anthropic", message_stream(OLD_DELTA)[:3]) == MESSAGE_EXPECTED._replace(
        output_tokens=1
    )


def test_a_chat_stream_adds_up_to_the_completion() -> None:
    chunks = chat_stream()
    sdk = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert fed("openai", sdk) == usage_from("openai", ChatCompletion.model_validate(CHAT))
    assert fed("openai", chunks) == CHAT_EXPECTED


def test_a_responses_stream_adds_up_to_the_response() -> None:
    events = responses_stream()
    sdk = [RESPONSE_EVENTS[e["type"]].model_validate(e) for e in events]
    assert fed("openai", sdk) == usage_from("openai", Response.model_validate(RESPONSE))
    assert fed("openai", events) == RESPONSE_EXPECTED


def test_a_stream_without_usage_is_refused_not_zero() -> None:
    stream = StreamUsage("openai")
    for chunk in chat_stream()[:-1]:
        stream.add(chunk)
    with pytest.raises(ValidationError) as refused:
        _ = stream.usage
    assert refused.value.field == "usage" and "include_usage" in refused.value.message


def test_an_anthropic_stream_missing_message_start_is_refused() -> None:
    stream = StreamUsage("anthropic")
    stream.add(message_stream(OLD_DELTA)[-2])
    with pytest.raises(ValidationError) as refused:
        _ = stream.usage
    assert refused.value.field == "usage"


def test_a_bad_figure_in_a_stream_raises_when_added() -> None:
    stream = StreamUsage("anthropic")
    with pytest.raises(ValidationError) as bad:
        stream.add({"type": "message_delta", "delta": {}, "usage": {"output_tokens": -5}})
    assert bad.value.field == "usage.output_tokens"


# --- Refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ({"id": "chatcmpl-1", "choices": []}, "usage"),
        ({"usage": None}, "usage"),
        ({"usage": {}}, "usage"),
        ({"usage": "1200 tokens"}, "usage"),
        ({"usage": {"promptTokenCount": 10, "candidatesTokenCount": 5}}, "usage"),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 3}}, "usage.prompt_tokens"),
        ({"usage": {"prompt_tokens": 10.0, "completion_tokens": 3}}, "usage.prompt_tokens"),
        ({"usage": {"prompt_tokens": 10, "completion_tokens": True}}, "usage.completion_tokens"),
        ({"usage": {"prompt_tokens": 10, "completion_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": "4"}}},
         "usage.prompt_tokens_details.cached_tokens"),
        ({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": -1}},
         "usage.total_tokens"),
        ({"type": "message_start", "message": {"usage": {"input_tokens": 5,
          "cache_read_input_tokens": -2, "output_tokens": 1}}},
         "message.usage.cache_read_input_tokens"),
        ({"usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 35,
                    "citation_tokens": 5}}, "usage.citation_tokens"),
        ({"usage": {"input_tokens": 10}}, "usage"),
        ({"usage": {"output_tokens": 10}}, "usage"),  # only a message_delta may lack input
        ({"usage": {"type": "duration", "seconds": -1.0}}, "usage.seconds"),
        ({"usage": {"type": "duration", "seconds": float("nan")}}, "usage.seconds"),
        ({"usage": {"type": "duration", "seconds": "9"}}, "usage.seconds"),
        ({"usage": {"prompt_tokens": 10**16, "completion_tokens": 3}}, "usage.prompt_tokens"),
    ],
)  # fmt: skip
def test_unreadable_usage_names_its_field(response: object, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        usage_from("openai", response)
    assert refused.value.field == field


def test_an_unknown_figure_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValidationError, match="refused rather than undercounted"):
        usage_from("perplexity", {"usage": {"prompt_tokens": 10, "completion_tokens": 20,
                                            "citation_tokens": 5}})  # fmt: skip


@pytest.mark.parametrize("provider", ["", None, 3])
def test_the_provider_must_be_named(provider: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        usage_from(provider, CHAT)
    assert refused.value.field == "provider"
    with pytest.raises(ValidationError):
        StreamUsage(provider)


def test_reading_leaves_the_response_unchanged() -> None:
    """Reading never changes the caller's response."""
    body = copy.deepcopy(MESSAGE)
    usage_from("anthropic", body)
    assert body == MESSAGE


# --- Agreement with genai-prices' own extraction -----------------------------------------


def genai(provider_id: str, flavor: str, body: dict[str, Any]) -> Usage:
    provider = next(p for p in data_snapshot.get_snapshot().providers if p.id == provider_id)
    _, extracted = provider.extract_usage(body, api_flavor=flavor)
    return Usage(
        input_tokens=extracted.input_tokens or 0,
        output_tokens=extracted.output_tokens or 0,
        cached_input_tokens=extracted.cache_read_tokens or 0,
        cache_write_tokens=extracted.cache_write_tokens or 0,
        reasoning_tokens=extracted.output_reasoning_tokens or 0,
        input_audio_tokens=extracted.input_audio_tokens or 0,
        output_audio_tokens=extracted.output_audio_tokens or 0,
    )


@pytest.mark.parametrize(
    ("provider", "provider_id", "flavor", "body"),
    [
        ("openai", "openai", "chat", CHAT),
        ("openai", "openai", "chat", AUDIO_CHAT),
        ("openai", "openai", "responses", RESPONSE),
        ("openai", "openai", "embeddings", {"usage": {"prompt_tokens": 8, "total_tokens": 8}}),
        ("xai", "x-ai", "chat", XAI_CHAT),
        ("anthropic", "anthropic", "default", MESSAGE),
        ("bedrock", "aws", "default", {"usage": {"inputTokens": 100, "outputTokens": 50,
         "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200, "totalTokens": 1350}}),
    ],
)  # fmt: skip
def test_agrees_with_genai_prices_where_both_apply(
    provider: str, provider_id: str, flavor: str, body: dict[str, Any]
) -> None:
    assert usage_from(provider, body) == genai(provider_id, flavor, body)
