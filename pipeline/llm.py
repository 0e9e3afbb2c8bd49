"""The answering model, as a LangChain chat model chosen by name from a plain registry.

- `llama-cpp` (default): the packaged GGUF run in-process by llama.cpp; no server, no key.
- `openai`: any OpenAI-compatible endpoint (EARMARK_LLM_BASE_URL, OPENAI_API_KEY), via langchain-openai.
- `ollama`: a local Ollama server, via langchain-ollama.

Small models cite reliably only when their output is constrained, so every backend is asked for JSON
matching a schema (`structured`). The llama.cpp adapter is written here rather than taken from
langchain-community: that package's ChatLlamaCpp drags in a large dependency set and does not pass
llama.cpp's `response_format` JSON-schema constraint through, which is the one feature we need.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from .config import AnswerOptions, TranscribeOptions
from .errors import ConfigError, EarmarkError, LLMError, ModelReplyError

log = logging.getLogger(__name__)

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def as_dicts(messages: list[BaseMessage]) -> list[dict]:
    """LangChain messages as the role/content dicts llama-cpp-python's chat completion takes."""
    return [{"role": _ROLES.get(m.type, "user"), "content": m.content} for m in messages]


# One llama.cpp context must not run two generations at once; the server answers on one thread, but a
# search that names a speaker by their words asks the model too, from the thread that searches.
_GENERATING = threading.Lock()


N_BATCH = 128  # prompt tokens read at once; a shared prompt start is kept in whole batches (AlignedLlama)


@functools.lru_cache(maxsize=2)
def _llama(model_path: str, n_ctx: int, n_threads: int):
    from llama_cpp import Llama

    class AlignedLlama(Llama):
        """Llama whose answers do not depend on what it was asked before.

        llama-cpp-python keeps the part a prompt shares with the previous one and reads only the rest,
        starting where they part: that moves where its batches of n_batch tokens start, so the
        arithmetic, and the same question got another answer after other questions (1 of 20 in
        eval/cli_speed.py). Here only whole batches of the shared part are kept, so every prompt is
        read in the batches a fresh model would read it in: the same answer whatever came before.
        Batches of 128 (N_BATCH) keep most of the fixed instructions at the start of every prompt
        (about 150 tokens) and read a 600-token prompt as fast as llama.cpp's default 512 here (8.0–8.5 s
        against 8.9–9.7 s on 2 cores; 64: 9.1–9.4 s)."""

        capturing = False  # set by _prompt_tokens: the next prompt is only wanted as tokens

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            if self.capturing:
                raise _Prompt(tokens)
            shared = 0
            for a, b in zip(self._input_ids, tokens):
                if a != b:
                    break
                shared += 1
            kept = min(shared, len(tokens) - 1) // self.n_batch * self.n_batch
            if kept < self.n_tokens:
                self._ctx.kv_cache_seq_rm(-1, kept, -1)
                self.n_tokens = kept  # 0: Llama.generate resets and reads the whole prompt
            return super().generate(tokens, *args, **kwargs)

    log.info("loading %s", model_path)
    # Read, not memory-mapped: llama.cpp repacks the Q4_K weights for the CPU's vector instructions into
    # memory of its own, so a mapped file held every weight twice (1.86 GB resident for a 1.07 GB model,
    # 1.27 GB read). Loading takes the same time here from a warm page cache (0.7-1.1 s), and the
    # resident memory of `serve` at a million passages is the measure in eval/scale.py.
    llama = AlignedLlama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_batch=N_BATCH, seed=0,
                         use_mmap=False, verbose=False)
    try:
        _restore_prefix(llama, model_path, n_threads)
    except Exception:  # a saving of time only: a model that cannot be primed still answers, from scratch
        log.warning("could not prime the model with the answer prompt's start", exc_info=True)
        llama.reset()
    return llama


class _Prompt(Exception):
    """Raised instead of generating, carrying the prompt's tokens (_prompt_tokens)."""

    def __init__(self, tokens: list[int]):
        super().__init__("prompt tokens")
        self.tokens = tokens


def _prompt_tokens(llama, messages: list[dict]) -> list[int]:
    """The tokens llama-cpp-python reads for a chat prompt, through its own chat template and tokenizer
    (so they are exactly those of a real call), without reading any of them."""
    llama.capturing = True
    try:
        llama.create_chat_completion(messages=messages, max_tokens=1)
    except _Prompt as p:
        return p.tokens
    finally:
        llama.capturing = False
    return []


def _restore_prefix(llama, model_path: str, n_threads: int) -> None:
    """Start the model with the answer prompt's fixed beginning already read.

    Every answer prompt begins with the same instructions (prompts/answer.toml, about 150 tokens); a
    process that starts from nothing (`earmark ask`) read them again each time, about two seconds on
    2 cores. Their model state is kept in the models dir after the first read and loaded here in
    milliseconds. Only whole batches are kept (AlignedLlama), so the state is the one a fresh model
    computes for those tokens and answers are unchanged; a state that does not load, or a prompt that
    no longer begins with its tokens, only costs the time saved.
    """
    import ctypes
    import hashlib

    import llama_cpp

    from . import prompts
    from .config import default_models_dir
    from .atomic import SHARED, write_atomic

    def rendered(passages: str, question: str) -> list[int]:
        messages = prompts.load("answer").format_messages(passages=passages, question=question)
        return _prompt_tokens(llama, as_dicts(messages))

    a, b = rendered("[1] a.wav 00:00-00:01: Yes.", "Who?"), rendered("[1] b.mp3 01:00-01:09: No, never.", "When?")
    shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    tokens = a[:shared // N_BATCH * N_BATCH]
    if not tokens:
        return
    stat = os.stat(model_path)
    key = hashlib.sha256(json.dumps([os.path.basename(model_path), stat.st_size, stat.st_mtime_ns, n_threads,
                                     llama.n_ctx(), N_BATCH, llama_cpp.__version__, tokens]).encode()).hexdigest()
    path = default_models_dir() / f"{os.path.basename(model_path)}.prefix-{key[:16]}.state"
    ctx = llama._ctx.ctx
    try:
        data = path.read_bytes()
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_set_data(ctx, buffer, len(data)) == len(data):
            llama.input_ids[:len(tokens)] = tokens
            llama.n_tokens = len(tokens)
            log.info("answer prompt's first %d tokens restored from %s", len(tokens), path)
            return
    except OSError:
        pass
    llama.reset()
    llama.eval(tokens)
    size = llama_cpp.llama_state_get_size(ctx)
    buffer = (ctypes.c_uint8 * size)()
    n = llama_cpp.llama_state_get_data(ctx, buffer, size)
    try:
        write_atomic(path, bytes(buffer[:n]), SHARED)
    except OSError as e:  # a read-only cache: every start reads the prefix itself, as before
        log.info("could not keep the answer prompt's state in %s: %s", path, e)
        return
    # The states of this model for an earlier prompt, thread count or llama.cpp are never read again.
    for stale in path.parent.glob(f"{os.path.basename(model_path)}.prefix-*.state"):
        if stale != path:
            stale.unlink(missing_ok=True)


class ChatLlamaCpp(BaseChatModel):
    """A GGUF model run in-process by llama-cpp-python, with `response_format` passed through."""

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 2
    temperature: float = 0.0
    max_tokens: int = 256

    @property
    def _llm_type(self) -> str:
        return "earmark-llama-cpp"

    def load(self) -> None:
        """Load the weights now (a server's warm-up) rather than at the first question."""
        _llama(self.model_path, self.n_ctx, self.n_threads)

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> dict:
        return {
            "messages": as_dicts(messages),
            "temperature": self.temperature, "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "stop": stop, "response_format": kwargs.get("response_format"),
        }

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = "".join(self._pieces(messages, stop, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _pieces(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> Iterator[str]:
        """The reply's text as it is written: field by field for a flat JSON schema (`_fields`), else
        as llama-cpp-python's chat completion writes it."""
        llama = _llama(self.model_path, self.n_ctx, self.n_threads)
        request = self._request(messages, stop, **kwargs)
        fields = flat_fields((request["response_format"] or {}).get("schema"))
        with _GENERATING:
            tokens = None
            if fields and not stop:
                try:
                    tokens = _prompt_tokens(llama, request["messages"])
                except Exception:  # a saving of time only: the whole object is written as before
                    log.warning("could not read the prompt as tokens; the reply is written whole", exc_info=True)
            if tokens:
                yield from _fields(llama, tokens, fields, self.temperature, request["max_tokens"])
                return
            for part in llama.create_chat_completion(stream=True, **request):
                yield part["choices"][0]["delta"].get("content") or ""

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for delta in self._pieces(messages, stop, **kwargs):
            if delta:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk


def flat_fields(schema: dict | None) -> list[tuple[str, dict]] | None:
    """The (name, schema) of each property of a JSON object schema whose properties are all required
    scalars (a number, a string, a choice of strings), in order; None for any other schema."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    props = schema.get("properties") or {}
    if not props or set(schema.get("required", ())) != set(props) or schema.get("additionalProperties"):
        return None
    if any(not isinstance(p, dict) or p.get("type") not in ("integer", "number", "string", "boolean")
           for p in props.values()):
        return None
    return list(props.items())


def _fields(llama, tokens: list[int], fields: list[tuple[str, dict]], temperature: float,
            max_tokens: int) -> Iterator[str]:
    """A JSON reply to a flat schema (`flat_fields`) after a prompt of `tokens` (`_prompt_tokens`),
    written field by field: each key is read with what precedes it, in one batch, and only the values
    are generated, each under its own schema's grammar (llama-cpp-python's converter, as for the whole
    object) followed by the comma or brace that ends it.

    Under a whole-object grammar the model also generates every key, one step at a time, though the
    grammar allows nothing else: 6 of the 14-30 steps of an answer ({"passage": 1, "answer": "..."}),
    0.1 s each on 2 cores, all before its first word. The keys are read as the tokens the model
    generates for them ('{"', 'pass', 'age', '":', then ' "', 'answer', '":'), so it reads the
    reply it would have written; the values, spaces and punctuation are its own."""
    import codecs

    import llama_cpp
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    left = max_tokens
    for i, (name, spec) in enumerate(fields):
        key = ("{" if i == 0 else " ") + json.dumps(name) + ":"
        yield key
        tokens += llama.tokenize(key.encode(), add_bos=False, special=False)
        end = "}" if i == len(fields) - 1 else ","
        gbnf = json_schema_to_gbnf(json.dumps(spec)).replace("root ::=", "value ::=", 1)
        grammar = LlamaGrammar.from_string(f'{gbnf}\nroot ::= " "? value "{end}"', verbose=False)
        sampling = {"temp": temperature, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "grammar": grammar}
        # The first key is read with the prompt as any prompt is (AlignedLlama: whole batches of what
        # it shares with the last one); a later one continues from where the last value ended.
        steps = llama.generate(tokens, **sampling) if i == 0 else Llama.generate(llama, tokens, reset=False, **sampling)
        decoder, said = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
        for token in steps:
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token) or left <= 0:
                break
            left -= 1
            piece = decoder.decode(llama.detokenize([token]))
            said += piece
            yield piece
            if _ended(said, end):
                break
        steps.close()
        if not _ended(said, end):
            return  # cut short (max_tokens), as a whole-object reply would be: not JSON
        tokens = [token]  # the value's last token, sampled but not yet read


def _ended(said: str, end: str) -> bool:
    """Whether a value's text is a whole JSON value and then its closing comma or brace."""
    try:
        _, at = json.JSONDecoder().raw_decode(said.strip())
    except ValueError:
        return False
    return said.strip()[at:].strip() == end


def _llama_cpp(options: AnswerOptions) -> BaseChatModel:
    from .models import llm_gguf

    path = llm_gguf(options.model) if options.model else llm_gguf()
    return ChatLlamaCpp(model_path=str(path), temperature=options.temperature, max_tokens=options.max_tokens,
                        n_threads=TranscribeOptions().threads)


def _openai(options: AnswerOptions) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as e:
        raise ConfigError("the openai backend needs `pip install 'earmark[openai]'`") from e
    kwargs = {"base_url": options.base_url} if options.base_url else {}
    # A local server needs no key, but the client insists on one; a real OPENAI_API_KEY wins.
    key = {} if os.environ.get("OPENAI_API_KEY") else {"api_key": "none"}
    return ChatOpenAI(model=options.model or "gpt-4o-mini", temperature=options.temperature,
                      max_tokens=options.max_tokens, timeout=options.timeout, max_retries=1, **key, **kwargs)


def _ollama(options: AnswerOptions) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError as e:
        raise ConfigError("the ollama backend needs `pip install 'earmark[ollama]'`") from e
    kwargs = {"base_url": options.base_url} if options.base_url else {}
    return ChatOllama(model=options.model or "qwen2.5:0.5b", temperature=options.temperature,
                      num_predict=options.max_tokens, client_kwargs={"timeout": options.timeout}, **kwargs)


BACKENDS: dict[str, Callable[[AnswerOptions], BaseChatModel]] = {
    "llama-cpp": _llama_cpp,
    "openai": _openai,
    "ollama": _ollama,
}


def warm(options: AnswerOptions) -> None:
    """Load the answering model now, if it runs in this process (a model server is not ours to load)."""
    model = chat_model(options)
    if isinstance(model, ChatLlamaCpp):
        model.load()


@contextmanager
def calling(options: AnswerOptions) -> Iterator[None]:
    """Around a call of a model server (openai, ollama): whatever its client raises (connection refused,
    a timeout, an HTTP error) becomes one LLMError line that names the server and what to do."""
    try:
        yield
    except EarmarkError:
        raise
    except Exception as e:
        if options.llm == "llama-cpp":  # in-process: a failure there is a bug, with its traceback
            raise
        name = type(e).__name__.lower()
        what = ("did not answer within "
                f"{options.timeout:g} s (EARMARK_LLM_TIMEOUT)" if "timeout" in name else
                "is unreachable" if "connect" in name else f"failed ({type(e).__name__})")
        where = options.base_url or "its default address"
        detail = " ".join(str(e).split())[:160]
        raise LLMError(f"the {options.llm} model server at {where} {what}: {detail}; start it, or point "
                       "EARMARK_LLM_BASE_URL at one that runs") from e


def chat_model(options: AnswerOptions) -> BaseChatModel:
    """The chat model named in the options; an unknown name lists the valid ones."""
    if options.llm not in BACKENDS:
        raise ConfigError(f"unknown LLM backend {options.llm!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[options.llm](options)


# How each backend is asked for JSON matching a schema, by backend name.
_STRUCTURED: dict[str, Callable[[BaseChatModel, dict], Any]] = {
    "llama-cpp": lambda m, schema: m.bind(response_format={"type": "json_object", "schema": schema}),
    "ollama": lambda m, schema: m.bind(format=schema),
    "openai": lambda m, schema: _openai_json(m, schema),
}


def _openai_json(model: BaseChatModel, schema: dict):
    """OpenAI's own dialect (`json_schema`: OpenAI, vLLM, Ollama, llama.cpp's llama-server), falling back to
    `json_object` with a `schema` for servers that know only that one (llama-cpp-python's llama_cpp.server
    refuses the first, with a 500). Any HTTP error falls back; a server that is down or slow does not."""
    import openai

    return model.bind(response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    ).with_fallbacks([model.bind(response_format={"type": "json_object", "schema": schema})],
                     exceptions_to_handle=(openai.APIStatusError,))


def structured(model: BaseChatModel, backend: str, schema: dict):
    """The model bound so that its output is JSON matching `schema`, in its backend's own dialect."""
    return _STRUCTURED[backend](model, schema)


def reply_json(prompt: str, schema: dict, options: AnswerOptions | None = None, **variables: str) -> dict:
    """The model's reply to a prompt of prompts/ (filled with ``variables``), as JSON matching ``schema``."""
    from . import prompts

    options = options or AnswerOptions()
    messages = prompts.load(prompt).format_messages(**variables)
    with calling(options):
        return parse_json(structured(chat_model(options), options.llm, schema).invoke(messages).content)


def reply_or_nothing(prompt: str, schema: dict, options: AnswerOptions | None = None, **variables: str) -> dict:
    """`reply_json`, or {} when the model wrote no readable JSON (a reply cut off at max_tokens): for a
    reply that only helps (a reranking, a speaker named by a deed, a summary's part), whose caller goes
    on without it. A model that cannot be reached still fails, in one line."""
    try:
        return reply_json(prompt, schema, options, **variables)
    except ModelReplyError as e:
        log.warning("%s: %s; going on without it", prompt, e)
        return {}


def parse_json(text: str) -> dict:
    """The JSON object in a model's reply; ModelReplyError (an LLMError) if there is none."""
    start, end = text.find("{"), text.rfind("}")
    try:
        return json.loads(text[start:end + 1])
    except (ValueError, json.JSONDecodeError) as e:
        raise ModelReplyError(f"the model did not return JSON: {text[:120]!r}") from e


def whole_fields(text: str) -> dict:
    """The fields of a JSON object reply that were written whole before it stopped (at max_tokens, or a
    server's reply that is not JSON): '{"passage": 2, "answer": "It was the cot' gives {"passage": 2}.
    A field cut short is left out, never completed, so a cut answer is not taken for a whole one; that
    is why langchain_core's parse_partial_json, which closes the open string, is not used here."""
    decoder, out = json.JSONDecoder(), {}
    i = text.find("{") + 1
    if i == 0:
        return out
    while True:
        i = _SEPARATOR.match(text, i).end()
        try:
            key, i = decoder.raw_decode(text, i)
            i = _COLON.match(text, i).end()
            value, i = decoder.raw_decode(text, i)
        except (ValueError, AttributeError):  # AttributeError: no colon after the key
            return out
        if not isinstance(key, str) or not _END.match(text, i):  # '"passage": 1' may have been 12
            return out
        out[key] = value


_SEPARATOR, _COLON, _END = re.compile(r"[\s,]*"), re.compile(r"\s*:\s*"), re.compile(r"\s*[,}]")


class FieldStream:
    """Feed it a JSON object's text as it is generated; it returns the new characters of one string field.

    Lets `earmark ask` print the answer while the model is still writing its JSON reply.
    """

    _ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/", "b": "", "f": "", "r": ""}

    def __init__(self, field: str):
        self.key = f'"{field}"'
        self.buffer = ""
        self.pos: int | None = None  # where the field's value starts in the buffer, once known
        self.done = False

    def feed(self, text: str) -> str:
        """The field's characters that `text` completes (decoded), or "" if none yet."""
        self.buffer += text
        if self.done:
            return ""
        if self.pos is None:
            k = self.buffer.find(self.key)
            q = self.buffer.find('"', self.buffer.find(":", k + len(self.key)) + 1) if k >= 0 else -1
            if k < 0 or q < 0 or self.buffer.find(":", k + len(self.key)) < 0:
                return ""
            self.pos = q + 1
        out = []
        while self.pos < len(self.buffer):
            c = self.buffer[self.pos]
            if c == "\\":
                if self.pos + 1 >= len(self.buffer):
                    break  # wait for the escaped character
                nxt = self.buffer[self.pos + 1]
                if nxt == "u":
                    if self.pos + 6 > len(self.buffer):
                        break
                    out.append(chr(int(self.buffer[self.pos + 2:self.pos + 6], 16)))
                    self.pos += 6
                    continue
                out.append(self._ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            if c == '"':
                self.done = True
                break
            out.append(c)
            self.pos += 1
        return "".join(out)
