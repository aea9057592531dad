"""The project's exception tree. Every error we raise on purpose derives from one root.

ArxivStreamError
├── ConfigError            settings that cannot work (bad URL, unknown device, ...)
├── FeedError              a response we fetched cannot be used
│   ├── FeedParseError     bytes that are not the XML/RSS we expected (malformed feed)
│   ├── OAIError           an OAI-PMH <error code=...> reply (code kept in .code)
│   └── FetchError         HTTP failure after the retry budget was spent
├── MessageError           a Kafka message that cannot be decoded (poison message)
├── ModelError
│   ├── ModelNotFoundError no promoted model / no such version / missing files
│   └── ModelFormatError   a model directory whose config or weights do not match
└── StorageError           the database refused or is unreachable
"""

from __future__ import annotations


class ArxivStreamError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(ArxivStreamError):
    pass


class FeedError(ArxivStreamError):
    pass


class FeedParseError(FeedError):
    pass


class OAIError(FeedError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"OAI-PMH error {code}: {message}")
        self.code = code
        self.message = message


class FetchError(FeedError):
    pass


class MessageError(ArxivStreamError):
    pass


class ModelError(ArxivStreamError):
    pass


class ModelNotFoundError(ModelError):
    pass


class ModelFormatError(ModelError):
    pass


class StorageError(ArxivStreamError):
    pass
