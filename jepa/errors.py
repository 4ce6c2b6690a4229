"""User-facing errors: raised for bad configs, paths and values; the CLI prints them in one line and exits 2."""


class ConfigError(ValueError):
    """A setting, path or value the user gave cannot work. The message names it and says how to fix it."""
