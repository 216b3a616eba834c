"""One exception type for bad input, so every entry point can turn it into one line and exit 1."""


class InputError(Exception):
    """Bad user input: the message names the file/column/value and what to do. No traceback shown."""
