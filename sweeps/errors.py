"""Errors of the command line, in their own module so that ``python -m sweeps.cli`` (where the CLI
module is ``__main__``) and the plugins (which import ``sweeps.cli``) share one class."""


class UsageError(Exception):
    """A user error: reported as one line, exit status 2."""
