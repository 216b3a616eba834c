"""The official kaggle client, called safely: credentials, one call with retries, one poll until a deadline.

`kaggle` authenticates when it is imported (and may print help and exit), so it is imported lazily inside
`client`, with its stdout captured: nothing the client prints reaches the user unredacted. Every failure becomes
a one-line KaggleError that names the fix. Every HTTP request the client makes gets a timeout (it sets none
itself), and retries wait with jittered exponential backoff, or as long as a 429's Retry-After asks.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from kagglecv.config.schema import defaults
from kagglecv.core.errors import InputError
from kagglecv.core.secrets import redact

log = logging.getLogger("kagglecv.kaggle")
T = TypeVar("T")

KAGGLE = defaults()["kaggle"]  # the `kaggle:` settings' defaults live in the schema, and only there
HTTP_TIMEOUT = KAGGLE["http_timeout"]  # seconds to connect, and between two reads, for every HTTP request
MAX_WAIT = 600.0  # the longest single wait before a retry, Retry-After included
CREDENTIAL_PLACES = (
    "save it as ~/.kaggle/kaggle.json (then chmod 600 ~/.kaggle/kaggle.json), "
    "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
)
NO_CREDENTIALS = (
    "no usable Kaggle credentials found: create a token at https://www.kaggle.com/settings/api and " + CREDENTIAL_PLACES
)


class KaggleError(InputError):
    """A Kaggle API failure, explained in one line with what to do about it."""


class Truncated(Exception):
    """The download ended before the size the server announced (Content-Length)."""


# ---------------------------------------------------------------- calling the client


@contextlib.contextmanager
def request_timeout(seconds: float | None):
    """Inside the block, every HTTP request that sets no timeout gets `seconds` (connect and each read).

    The client builds its own requests sessions and passes no timeout, so a stalled connection would hang
    the job forever; every request of `requests` goes through HTTPAdapter.send, so the default goes there."""
    from requests.adapters import HTTPAdapter

    original = HTTPAdapter.send
    if seconds is None or getattr(original, "_kagglecv_timeout", False):  # none asked, or already in place
        yield
        return

    def send(self, request, stream=False, timeout=None, *args, **kwargs):
        return original(self, request, stream, seconds if timeout is None else timeout, *args, **kwargs)

    send._kagglecv_timeout = True
    HTTPAdapter.send = send
    try:
        yield
    finally:
        HTTPAdapter.send = original


@contextlib.contextmanager
def quiet_client(http_timeout: float | None = HTTP_TIMEOUT):
    """Capture what the client prints (auth help, progress, warnings); log it redacted at debug level.
    Every HTTP request made inside gets `http_timeout`."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), request_timeout(http_timeout):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("kaggle client: %s", redact(buf.getvalue().strip()))


def client(http_timeout: float | None = HTTP_TIMEOUT):
    """An authenticated KaggleApi. The client prints help and exits(1) when it finds no credentials."""
    import requests

    try:
        with quiet_client(http_timeout):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError as e:
        raise KaggleError(f"the kaggle client is missing ({e}): pip install kaggle==2.2.4") from e
    except SystemExit:
        raise KaggleError(NO_CREDENTIALS) from None
    except requests.RequestException as e:  # checking an access token needs the network
        raise KaggleError(f"could not reach Kaggle to check the access token: {redact(str(e))}") from e
    return api


def http_status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return response.status_code if response is not None else None  # a Response is falsy on errors


def explain(err: Exception, competition: str, action: str) -> KaggleError:
    """One line naming the fix for an HTTP error from the client."""
    status, detail = http_status(err), (redact(str(err)).splitlines() or [type(err).__name__])[0].rstrip(".")
    if status == 401:
        return KaggleError(
            f"Kaggle rejected the credentials (401 Unauthorized): they are wrong or expired; "
            f"create a new token at https://www.kaggle.com/settings/api and {CREDENTIAL_PLACES}"
        )
    if status == 403:
        return KaggleError(
            f"Kaggle refused the {action} for '{competition}' (403 Forbidden): accept the "
            f"competition's rules at https://www.kaggle.com/competitions/{competition}/rules "
            f"(the API cannot accept them for you), then run again"
        )
    if status == 404:
        return KaggleError(
            f"Kaggle has no competition '{competition}' (404 Not Found): check the slug, the last "
            f"part of https://www.kaggle.com/competitions/<slug>"
        )
    if status == 400 and any(w in detail.lower() for w in ("notebook", "kernel")):
        return KaggleError(
            f"'{competition}' is a code competition and refuses file uploads ({detail}): push a "
            f"notebook that writes submission.csv (`kaggle kernels push -p DIR`), then run "
            f"`kaggle competitions submit -c {competition} -k OWNER/KERNEL -f submission.csv "
            f"-v VERSION -m MSG`"
        )
    return KaggleError(f"Kaggle {action} for '{competition}' failed ({status or type(err).__name__}): {detail}")


def retry_after(err: Exception) -> float | None:
    """Seconds a 429/503 response asks to wait (Retry-After: seconds or an HTTP date), if it says."""
    response = getattr(err, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    return None


def backoff_delay(attempt: int, backoff: float, max_wait: float = MAX_WAIT) -> float:
    """Exponential backoff with jitter: backoff * 2**attempt, times a random factor in [0.5, 1.5), capped.

    The jitter keeps many jobs that failed together from retrying together."""
    return min(max_wait, backoff * 2**attempt * random.uniform(0.5, 1.5))


def retriable() -> tuple[type[BaseException], ...]:
    import requests
    from urllib3.exceptions import ProtocolError

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        ProtocolError,
        Truncated,
    )


def call(
    fn: Callable[[], T],
    competition: str,
    action: str,
    retries: int = 0,
    backoff: float = 2.0,
    hint: str = "try again later",
    http_timeout: float | None = HTTP_TIMEOUT,
) -> T:
    """Run a client call; retry network errors, timeouts, cut-short downloads, 429 and 5xx `retries` times.

    Waits follow a response's Retry-After, else jittered exponential backoff (see backoff_delay)."""
    import requests

    for attempt in range(retries + 1):
        try:
            with quiet_client(http_timeout):
                return fn()
        except SystemExit as e:  # the client exits on some failures instead of raising
            raise KaggleError(f"Kaggle {action} for '{competition}' failed: the kaggle client exited ({e.code})") from e
        except requests.HTTPError as e:
            if http_status(e) is not None and http_status(e) < 500 and http_status(e) != 429:
                raise explain(e, competition, action) from e
            err = e
        except retriable() as e:
            err = e
        if attempt < retries:
            asked = retry_after(err)
            wait = min(MAX_WAIT, asked) if asked is not None else backoff_delay(attempt, backoff)
            log.warning(
                "Kaggle %s for %s failed (attempt %d/%d): %s; retrying in %.1fs",
                action,
                competition,
                attempt + 1,
                retries + 1,
                redact(str(err)),
                wait,
            )
            time.sleep(wait)
    why = {429: "Kaggle is rate-limiting this account (429 Too Many Requests)"}.get(
        http_status(err), "Kaggle or the network is unavailable"
    )
    if isinstance(err, requests.Timeout):
        why = f"no answer within {http_timeout:g}s; Kaggle or the network is unavailable or very slow"
    if isinstance(err, (Truncated, requests.exceptions.ChunkedEncodingError)):
        read = re.search(r"IncompleteRead\(([^)]*)\)", str(err))  # '100 bytes read, 468 more expected'
        why = f"the download was cut short ({read.group(1) if read else redact(str(err)).splitlines()[0][:200]})"
    raise KaggleError(
        f"Kaggle {action} for '{competition}' failed after {retries + 1} attempt(s) "
        f"({http_status(err) or type(err).__name__}): {why}; {hint}"
    ) from err


def guard(fn: Callable[[], T], competition: str, action: str, hint: str, **kw) -> T:
    """`call`, plus the ValueErrors the client raises for refused kernels and datasets, as one line."""
    try:
        return call(fn, competition, action, hint=hint, **kw)
    except ValueError as e:
        raise KaggleError(
            f"Kaggle {action} for '{competition}' failed: {redact(str(e)).splitlines()[0]}; {hint}"
        ) from e


def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, interval: float, timeout: float) -> tuple[T, bool]:
    """Call `fetch` every `interval` seconds until `done` says yes to what it returned, or `timeout` seconds have
    passed (it is called at least once); (the last value, whether it was done)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value, True
        if time.monotonic() >= deadline:
            return value, False
        time.sleep(interval)
