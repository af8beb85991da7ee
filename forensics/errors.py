"""The one exception type for bad input: the CLI turns it into a one-line message and exit status 2."""


class InputError(ValueError):
    """Bad user input (file, line, setting); the message names where and what is wrong."""
