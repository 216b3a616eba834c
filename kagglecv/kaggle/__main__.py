"""The Kaggle command line of kagglecv (also `kagglecv download`):

    python -m kagglecv.kaggle download COMPETITION DEST
    python -m kagglecv.kaggle submit COMPETITION FILE -m MESSAGE [--leaderboard results/leaderboard.csv --cv 0.97]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.secrets import redact
from kagglecv.kaggle.client import HTTP_TIMEOUT, KAGGLE
from kagglecv.kaggle.download import download_competition
from kagglecv.kaggle.submit import check_result, submit_and_record


def main(argv: list[str] | None = None, prog: str = "python -m kagglecv.kaggle") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="download a competition or submit a file with the official kaggle client")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the kaggle client prints (redacted)")
    parser.add_argument("--http-timeout", type=float, default=HTTP_TIMEOUT,
                        help="seconds to connect and between reads, for every HTTP request")
    cmd = parser.add_subparsers(dest="cmd", required=True)
    d = cmd.add_parser("download", help="download and unpack a competition's files")
    d.add_argument("competition")
    d.add_argument("dest", type=Path, help="e.g. data/kaggle/<competition>; files land in DEST/files")
    d.add_argument("--retries", type=int, default=KAGGLE["retries"])
    d.add_argument("--backoff", type=float, default=KAGGLE["backoff"])
    s = cmd.add_parser("submit", help="submit a file and wait for its public score")
    s.add_argument("competition")
    s.add_argument("file", type=Path)
    s.add_argument("-m", "--message", required=True)
    s.add_argument("--poll-interval", type=float, default=KAGGLE["poll_interval"])
    s.add_argument("--timeout", type=float, default=KAGGLE["timeout"])
    s.add_argument("--leaderboard", type=Path, help="leaderboard.csv to append the result to (a pending row "
                                                    "of the same file is polled again instead of resubmitting)")
    s.add_argument("--cv", type=float, help="the run's cross-validation score, for the leaderboard")
    s.add_argument("--resume-ref", help="poll this earlier submission instead of uploading")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "download":
            print(download_competition(args.competition, args.dest, retries=args.retries, backoff=args.backoff,
                                       http_timeout=args.http_timeout))
            return 0
        result = submit_and_record(args.competition, args.file, args.message, args.leaderboard, cv=args.cv,
                                   resume_ref=args.resume_ref, poll_interval=args.poll_interval,
                                   timeout=args.timeout, http_timeout=args.http_timeout)
        print(json.dumps(result))
        check_result(result, args.competition)
    except InputError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
