"""The argument parser every subcommand uses (`run`, `config-check`, `config-sync`, `wal-stats`,
`target-stats`); its own module so that the subcommands do not import the entry point that dispatches them."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse that names an unknown flag as such (and still exits 2, as Go's flag package does)."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            extra = message[len(prefix):].split()
            flags = [a for a in extra if a.startswith("-")]
            message = (f"unknown flag {flags[0].split('=', 1)[0]}" if flags
                       else f"unexpected argument {extra[0]!r}")
        self.exit(2, f"{self.prog}: error: {message}\nRun '{self.prog} --help' for usage.\n")
