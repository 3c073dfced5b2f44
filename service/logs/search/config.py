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
from dataclasses import dataclass

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.schema import yaml_field
from service.config.sizes import SI_OR_IEC, parse_size


def max_size_bytes(text: str) -> int:
    """`1GiB`, `500MB`, `1048576` → bytes."""
    size = parse_size(text, SI_OR_IEC)
    if size is None:
        raise ConfigError(f'invalid size "{text}"')
    return size


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
        if max_size_bytes(self.max_size) <= 0:
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
        return max_size_bytes(self.max_size)

    def directory(self, wal_directory: str, instance: str) -> str:
        """The data directory: as configured, else under the node's WAL directory, named safely."""
        if self.data_directory:
            return self.data_directory
        from service.wal.naming import wal_dir_for

        return wal_dir_for(os.path.join(wal_directory, "search"), instance)
