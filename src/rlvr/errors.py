"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (config value, path, flag). Never a bug in rlvr."""


class ConfigError(UserError):
    """An invalid configuration value; the message names the field and what is allowed."""


class RunStopped(Exception):
    """A run stopped on purpose by a guard (reward failures, non-finite updates); the message says
    why and where its last good checkpoint is. The CLI prints it as one line and exits with code 3."""
