"""Errors earmark reports to users as one line; the CLI turns them into a message and an exit code."""


class EarmarkError(Exception):
    """Base for errors earmark reports to users as one line."""


class AudioError(EarmarkError):
    """A file could not be read as audio (empty, corrupt, not audio, or ffmpeg missing)."""


class LibraryError(EarmarkError):
    """The library directory is unusable: wrong embedding model, corrupt catalog, unknown recording."""


class ConfigError(EarmarkError):
    """A setting names something that does not exist (unknown backend, model or mode)."""


class LLMError(EarmarkError):
    """The answering model failed or returned something unusable."""


class ModelReplyError(LLMError):
    """The model answered, but not with the JSON it was asked for (a reply cut off at its token limit)."""


class ModelNotFound(EarmarkError):
    """A model name is unknown, or the package that carries its weights is not installed."""


class ModelIntegrityError(EarmarkError):
    """Model weights do not match their pinned SHA-256, or cannot be converted or loaded."""


class CustodyError(EarmarkError):
    """An original recording changed or went missing since it was ingested, or the audit log is unusable."""


class QueryError(EarmarkError):
    """A query, phrase or question holds nothing to look for (empty, or only punctuation)."""


class RangeError(EarmarkError):
    """A time or time range given by the user is malformed or lies outside the recording."""
