"""`search:` under a logs instance: the local store's retention and size, and the chat provider.

```yaml
search:
  enabled: true
  retention: 7d            # entries older than this (by their timestamp) are deleted
  max_size: 1GiB           # bytes used by the database; oldest entries go first when over
  source_label: container  # the label naming a "container"; falls back to `job`
  data_directory: ""       # default: <wal_directory>/search/<instance>
  chat:
    url: https://api.openai.com/v1   # OpenAI-compatible base URL (…/chat/completions is appended); empty = offline
    model: gpt-4o-mini
    api_key_env: OPENAI_API_KEY      # or api_key_file: /run/secrets/key
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.schema import yaml_field

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
          "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    """`1GiB`, `500MB`, `1048576` → bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f'invalid size "{text}"')
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


@dataclass
class ChatConfig:
    __yaml_type__ = "search.ChatConfig"

    url: str = ""
    model: str = ""
    api_key_env: str = ""
    api_key_file: str = ""
    timeout: Duration = Duration(60)
    max_tokens: int = 2000

    def check(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f'chat url must be http(s): "{self.url}"')
        if self.url and not self.model:
            raise ConfigError("chat model is required when chat url is set")
        if self.api_key_env and self.api_key_file:
            raise ConfigError("at most one of api_key_env and api_key_file must be configured")

    def api_key(self) -> str:
        """Read at each request so a rotated key is picked up."""
        if self.api_key_file:
            with open(self.api_key_file, encoding="utf-8") as fh:
                return fh.read().strip()
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return ""


@dataclass
class SearchConfig:
    __yaml_type__ = "search.Config"

    enabled: bool = True
    retention: Duration = Duration(7 * 86400)
    max_size: str = "1GiB"
    source_label: str = "container"
    data_directory: str = ""
    chat: ChatConfig = yaml_field(default_factory=ChatConfig)
    # How often retention runs; ours, mostly for tests.
    retention_interval: Duration = Duration(10)
    # Entries read from the WAL ahead of the writer; when reached the store stops reading (it lags in the WAL,
    # nothing is dropped).
    max_queue_entries: int = 200_000
    # Cluster-wide answers (ours): how long to wait for each other node, and how many to ask at once.
    peer_timeout: Duration = Duration(2)
    peer_concurrency: int = 8

    def check(self) -> None:
        if parse_size(self.max_size) <= 0:
            raise ConfigError("search max_size must be positive")
        if self.retention < 0:
            raise ConfigError("search retention must not be negative")
        if self.retention_interval <= 0:
            raise ConfigError("search retention_interval must be positive")
        if self.max_queue_entries <= 0:
            raise ConfigError("search max_queue_entries must be positive")
        if not self.source_label:
            raise ConfigError("search source_label must not be empty")
        if self.peer_timeout <= 0:
            raise ConfigError("search peer_timeout must be positive")
        if self.peer_concurrency <= 0:
            raise ConfigError("search peer_concurrency must be positive")

    @property
    def max_size_bytes(self) -> int:
        return parse_size(self.max_size)

    def directory(self, wal_directory: str, instance: str) -> str:
        """The data directory: as configured, else under the node's WAL directory, named safely."""
        if self.data_directory:
            return self.data_directory
        from service.wal.naming import wal_dir_for

        return wal_dir_for(os.path.join(wal_directory, "search"), instance)
