"""`kagglecv`: the library's entry points from a shell, one command with subcommands (`kagglecv COMMAND --help`).

    kagglecv config   [--configfile F ...] [--config KEY=VALUE ...]   the resolved configuration, as the jobs see it
    kagglecv inspect  PATH [--configfile F ...]                       how a competition is read, before any run
    kagglecv predict  --results results/<competition> DIR             the trained ensemble on a folder of images
    kagglecv backfill results/<competition>                           put into MLflow what tracking missed
    kagglecv download COMPETITION DEST                                a competition through the Kaggle API
    kagglecv submit   COMPETITION FILE -m MESSAGE                     a file submission, and its public score

Bad input is one line, `ERROR: ...`, redacted, and exit status 1, whichever command it came from. The workflow
itself is `snakemake` (README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from kagglecv.core.errors import InputError


def parse_override(text: str) -> dict:
    """KEY=VALUE (KEY may be dotted: train.epochs=3) as a nested mapping; VALUE is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)
    return out


def layered_config(configfiles: list[Path], overrides: list[dict], workflow_config: Path | None) -> dict:
    """What rules/common.smk resolves for the same command line (`workflow_config` None: no base layer)."""
    from kagglecv.config.schema import layered, load_schema, load_yaml, merge, resolve

    over: dict = {}
    for o in overrides:
        over = merge(over, o)
    use_base = workflow_config is not None and workflow_config.exists() and not configfiles
    schema = load_schema()  # once for both, as rules/common.smk does
    return resolve(layered(load_yaml(workflow_config) if use_base else {}, configfiles, over, schema), schema)


def resolved_config(configfiles: list[Path], overrides: list[dict], workflow_config: Path) -> dict:
    """The configuration with each backbone's settings merged and its input size and the image cache's side
    filled in."""
    from kagglecv.config.members import backbone_settings, cache_side, input_size

    config = layered_config(configfiles, overrides, workflow_config)
    backbones = backbone_settings(config)
    for name, settings in backbones.items():
        settings["input_size"] = input_size(name, settings)
    shown = {k: v for k, v in config.items() if k != "train"}  # `train` is inside every backbone below
    shown["backbones"] = backbones
    shown["data"] = {**config["data"], "image_size": cache_side(backbones, config["data"])}
    return shown


def config_layers(p: argparse.ArgumentParser, workflow: bool = True) -> None:
    """--configfile and --config; with `workflow`, --workflow-config (the base layer when no --configfile)."""
    p.add_argument(
        "--configfile",
        action="append",
        type=Path,
        default=[],
        metavar="F",
        help="a config file laid over the schema's defaults (may be repeated, later files win)",
    )
    p.add_argument(
        "--config",
        action="append",
        type=parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="one setting over everything else (dotted keys: train.epochs=3)",
    )
    if workflow:
        p.add_argument(
            "--workflow-config",
            type=Path,
            default=Path("config.yaml"),
            help="the Snakefile's own config file, used when no --configfile is given (default: %(default)s)",
        )


def config_cmd(args) -> int:
    shown = resolved_config(args.configfile, args.config, args.workflow_config)
    sources = " < ".join(
        [
            "schema defaults",
            *map(str, args.configfile),
            *([] if args.configfile else [str(args.workflow_config)]),
            *(["--config"] if args.config else []),
        ]
    )
    print(
        f"# kagglecv config: {sources}\n# backbones: `train` merged with each backbone's overrides; "
        "input_size: what it trains at\n# data.image_size: the side of the image cache"
    )
    from kagglecv.core.secrets import redact  # a tune.storage or tracking URL may carry a password

    print(redact(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False)), end="")
    return 0


def inspect_cmd(args) -> int:
    from kagglecv.data.inspect import inspect

    print(inspect(args.path, layered_config(args.configfile, args.config, workflow_config=None)))
    return 0


def predict_cmd(args) -> int:
    from kagglecv.core.layout import Layout
    from kagglecv.inference.predict import output_name, predict_folder

    out = predict_folder(
        args.results, args.folder, args.out, device=args.device, threads=args.threads, meta_csv=args.meta
    )
    dest = Path(args.out) if args.out else Layout(Path(args.results)).prediction(output_name(args.folder))
    print(f"{len(out)} prediction(s) written to {dest}")
    return 0


def backfill_cmd(args) -> int:
    from kagglecv.tracking.backfill import backfill

    backfill(args.results, args.experiment, args.parent_run_id, args.close_parents, args.dry_run)
    return 0


def download_cmd(args) -> int:
    from kagglecv.kaggle.download import download_competition

    print(
        download_competition(
            args.competition, args.dest, retries=args.retries, backoff=args.backoff, http_timeout=args.http_timeout
        )
    )
    return 0


def submit_cmd(args) -> int:
    from kagglecv.kaggle.submit import check_result, submit_and_record

    result = submit_and_record(
        args.competition,
        args.file,
        args.message,
        args.leaderboard,
        cv=args.cv,
        resume_ref=args.resume_ref,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        http_timeout=args.http_timeout,
    )
    print(json.dumps(result))
    check_result(result, args.competition)
    return 0


def parser() -> argparse.ArgumentParser:
    from kagglecv.config.schema import default_value

    kaggle = default_value("kaggle")
    ap = argparse.ArgumentParser(
        prog="kagglecv", description=__doc__.split("\n\n")[0], epilog="`kagglecv COMMAND --help` describes each."
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log what the libraries say (redacted)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "config",
        help="print the resolved configuration as YAML: what the jobs will see",
        description="The resolved configuration. Layers, lowest first: the schema's defaults; "
        "config.yaml (the demo's choices) unless --configfile is given; the --configfile "
        "files; --config values.",
    )
    config_layers(p)
    p.set_defaults(run=config_cmd)

    p = sub.add_parser(
        "inspect",
        help="how a competition folder or archive is read: layout, columns, task, "
        "submission, images; and the config line to change each",
    )
    p.add_argument("path", type=Path, help="the competition: a folder or an archive, as Kaggle ships it")
    config_layers(p, workflow=False)  # the folder is read with the schema's defaults and the given layers
    p.set_defaults(run=inspect_cmd)

    p = sub.add_parser("predict", help="predict a folder of new images with a finished run's ensemble")
    p.add_argument("folder", help="folder of images to predict (files directly inside it)")
    p.add_argument("--results", required=True, help="the competition's results folder, results/<competition>")
    p.add_argument("--out", help="CSV to write (default: <results>/predictions/<folder name>.csv)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--meta",
        help="CSV of the images' metadata, for runs with data.meta_columns: a first column of "
        "file names, then those columns",
    )
    p.set_defaults(run=predict_cmd)

    p = sub.add_parser("backfill", help="create the MLflow runs that tracking missed, from what the jobs wrote")
    p.add_argument("results", help="results/<competition>: the folder the workflow wrote")
    p.add_argument("--experiment", help="MLflow experiment (default: the folder's name, as the workflow names it)")
    p.add_argument(
        "--parent-run-id", help="make every new run a child of this run instead of the workflow run of its time"
    )
    p.add_argument(
        "--close-parents",
        action="store_true",
        help="mark the workflow parent runs of the backfilled jobs FINISHED if still RUNNING (their "
        "snakemake could not close them while the server was down); only once no workflow is "
        "running on these results",
    )
    p.add_argument("--dry-run", "-n", action="store_true", help="only say what would be created")
    p.set_defaults(run=backfill_cmd)

    for name, what in (
        ("download", "download and unpack a competition with the official kaggle client"),
        ("submit", "submit a file and wait for its public score"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument(
            "--http-timeout",
            type=float,
            default=kaggle["http_timeout"],
            help="seconds to connect and between reads, for every HTTP request",
        )
        p.add_argument("competition")
        if name == "download":
            p.add_argument("dest", type=Path, help="e.g. data/kaggle/<competition>; files land in DEST/files")
            p.add_argument("--retries", type=int, default=kaggle["retries"])
            p.add_argument("--backoff", type=float, default=kaggle["backoff"])
            p.set_defaults(run=download_cmd)
            continue
        p.add_argument("file", type=Path)
        p.add_argument("-m", "--message", required=True)
        p.add_argument("--poll-interval", type=float, default=kaggle["poll_interval"])
        p.add_argument("--timeout", type=float, default=kaggle["timeout"])
        p.add_argument(
            "--leaderboard",
            type=Path,
            help="leaderboard.csv to append the result to (a pending row of "
            "the same file is polled again instead of resubmitting)",
        )
        p.add_argument("--cv", type=float, help="the run's cross-validation score, for the leaderboard")
        p.add_argument("--resume-ref", help="poll this earlier submission instead of uploading")
        p.set_defaults(run=submit_cmd)
    return ap


def main(argv: list[str] | None = None) -> int:
    from kagglecv.core.secrets import redact

    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        return args.run(args)
    except InputError as e:
        print(f"ERROR: {redact(str(e))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
