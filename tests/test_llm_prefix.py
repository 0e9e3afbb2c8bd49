"""The answer prompt's fixed beginning is read once and kept (llm._restore_prefix): a process that
starts from nothing (`earmark ask`) begins with it already read, and answers exactly as a model that
read the whole prompt itself. Real model, real processes: the point is what a cold start pays."""

import json
import os
import subprocess
import sys
from pathlib import Path

CODE = r"""
import json, sys
from pipeline import llm, prompts
from pipeline.answer import answer_schema
from pipeline.config import AnswerOptions

if sys.argv[1] == "without":
    llm._restore_prefix = lambda *args: None
if sys.argv[1] == "broken":  # priming fails (a chat template it cannot render, say): answering must not
    def fail(*args):
        raise RuntimeError("cannot render the template")
    llm._prompt_tokens = fail
options = AnswerOptions()
model = llm.chat_model(options)
llama = llm._llama(model.model_path, model.n_ctx, model.n_threads)
read_at_start = llama.n_tokens
messages = prompts.load("answer").format_messages(
    passages="[1] jfk-inaugural-1961-excerpt.flac 00:03-00:11: And so, my fellow Americans, ask not what your "
             "country can do for you, ask what you can do for your country.",
    question="What did Kennedy ask Americans to do?")
reply = llm.structured(model, options.llm, answer_schema(1)).invoke(messages).content
print(json.dumps({"read_at_start": read_at_start, "reply": reply}))
"""


def _run(how: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", CODE, how], capture_output=True, text=True, check=True,
                          env={**os.environ, "EARMARK_LOG": "INFO"})
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_cold_start_finds_the_prompt_start_read_and_answers_the_same():
    models = Path(os.environ["EARMARK_MODELS_DIR"])
    for old in models.glob("*.prefix-*.state"):
        old.unlink()
    first, _ = _run("with")  # reads the prompt's start itself, and keeps its state
    kept = list(models.glob("*.prefix-*.state"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0
    again, _ = _run("with")  # a new process: starts with it read
    plain, _ = _run("without")  # a model that reads every prompt from its first token
    assert plain["read_at_start"] == 0
    assert first["read_at_start"] == again["read_at_start"] >= 128  # whole batches of the fixed instructions
    assert json.loads(first["reply"]) == json.loads(again["reply"]) == json.loads(plain["reply"])
    assert "ask what you can do for your country" in json.loads(plain["reply"])["answer"].lower()


def test_a_state_that_does_not_load_is_made_again():
    """A truncated or foreign state file is not trusted: the prompt's start is read again and kept anew."""
    models = Path(os.environ["EARMARK_MODELS_DIR"])
    _run("with")
    (state,) = models.glob("*.prefix-*.state")
    state.write_bytes(state.read_bytes()[:1000])
    broken, _ = _run("with")
    plain, _ = _run("without")
    assert json.loads(broken["reply"]) == json.loads(plain["reply"])
    assert state.stat().st_size > 1000  # written whole again


def test_a_model_that_cannot_be_primed_still_answers_the_same():
    failed, log = _run("broken")
    plain, _ = _run("without")
    assert failed["read_at_start"] == 0 and "could not prime" in log
    assert json.loads(failed["reply"]) == json.loads(plain["reply"])


def test_a_new_state_retires_the_states_of_an_earlier_prompt():
    """Each change of the prompt (or of llama.cpp, or the thread count) makes a new 3.7 MB state; the
    one it replaces is never read again and goes when the new one is kept."""
    models = Path(os.environ["EARMARK_MODELS_DIR"])
    _run("with")
    (state,) = models.glob("*.prefix-*.state")
    model = state.name.split(".prefix-")[0]
    earlier = models / f"{model}.prefix-0123456789abcdef.state"
    earlier.write_bytes(b"state of an earlier prompt")
    other = models / "another-model.gguf.prefix-0123456789abcdef.state"  # another model's: kept
    other.write_bytes(b"another model's state")
    state.unlink()
    _run("with")
    assert sorted(p.name for p in models.glob("*.prefix-*.state")) == sorted([state.name, other.name])
    other.unlink()


def test_the_answering_model_s_weights_are_held_once_not_also_mapped_from_its_file():
    from pipeline import llm
    from pipeline.config import AnswerOptions

    model = llm.chat_model(AnswerOptions())
    llama = llm._llama(model.model_path, model.n_ctx, model.n_threads)
    assert llama.n_vocab() > 0
    maps = Path("/proc/self/maps").read_text()
    assert os.path.realpath(model.model_path) not in maps  # repacked copy only: a mapping would be counted again
