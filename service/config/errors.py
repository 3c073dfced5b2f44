"""The one error type config loading and validation raise."""


class ConfigError(ValueError):
    """A config could not be parsed or did not validate; the message is shown to the user as is."""
