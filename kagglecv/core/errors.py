"""One exception type for bad input, so every entry point can turn it into one line and exit 1."""


class InputError(Exception):
    """Bad user input: the message names the file/column/value and what to do. No traceback shown."""


def first_line(e: BaseException, empty: str | None = None) -> str:
    """An exception's first line for a one-line message (tarfile, py7zr, PIL and timm explain themselves over
    several); an exception with no message gives `empty`, else its type's name."""
    return (str(e).strip().splitlines() or [type(e).__name__ if empty is None else empty])[0]
