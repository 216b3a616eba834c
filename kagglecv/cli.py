"""`kagglecv`: the library's entry points from a shell.

    kagglecv config   [--configfile F ...] [--config KEY=VALUE ...]   the resolved configuration, as the jobs see it
    kagglecv predict  --results results/<competition> DIR             the trained ensemble on a folder of images
    kagglecv backfill results/<competition>                           put into MLflow what tracking missed
    kagglecv download COMPETITION DEST                                a competition through the Kaggle API

`kagglecv COMMAND --help` describes each. The workflow itself is `snakemake` (README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

COMMANDS = {
    "config": "print the resolved configuration as YAML: what the jobs will see, backbones merged",
    "predict": "predict a folder of new images with a finished run's ensemble",
    "backfill": "create the MLflow runs that tracking missed, from what the jobs wrote",
    "download": "download and unpack a competition with the official kaggle client",
}


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


def resolved_config(configfiles: list[Path], overrides: list[dict], workflow_config: Path) -> dict:
    """What rules/common.smk resolves for the same command line, with each backbone's settings merged and its
    input size and the image cache's side filled in."""
    from kagglecv.config.members import backbone_settings, cache_side, input_size
    from kagglecv.config.schema import layered, load_yaml, merge, resolve

    over: dict = {}
    for o in overrides:
        over = merge(over, o)
    base = load_yaml(workflow_config) if workflow_config.exists() and not configfiles else {}
    config = resolve(layered(base, configfiles, over))
    backbones = backbone_settings(config)
    for name, settings in backbones.items():
        settings["input_size"] = input_size(name, settings)
    shown = {k: v for k, v in config.items() if k != "train"}  # `train` is inside every backbone below
    shown["backbones"] = backbones
    shown["data"] = {**config["data"], "image_size": cache_side(backbones, config["data"])}
    return shown


def config_main(argv: list[str] | None, prog: str) -> int:
    ap = argparse.ArgumentParser(prog=prog, description=COMMANDS["config"] + ". Layers, lowest first: the "
                                 "schema's defaults; config.yaml (the demo's choices) unless --configfile is "
                                 "given; the --configfile files; --config values.")
    ap.add_argument("--configfile", action="append", type=Path, default=[], metavar="F",
                    help="a config file laid over the schema's defaults (may be repeated, later files win)")
    ap.add_argument("--config", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                    help="one setting over everything else (dotted keys: train.epochs=3)")
    ap.add_argument("--workflow-config", type=Path, default=Path("config.yaml"),
                    help="the Snakefile's own config file, used when no --configfile is given (default: %(default)s)")
    args = ap.parse_args(argv)
    shown = resolved_config(args.configfile, args.config, args.workflow_config)
    sources = " < ".join(["schema defaults",
                          *map(str, args.configfile),
                          *([] if args.configfile else [str(args.workflow_config)]),
                          *(["--config"] if args.config else [])])
    print(f"# kagglecv config: {sources}\n# backbones: `train` merged with each backbone's overrides; "
          "input_size: what it trains at\n# data.image_size: the side of the image cache")
    print(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "usage: kagglecv COMMAND [ARGS ...]\n\n" + "\n".join(
            f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
        usage += "\n\n`kagglecv COMMAND --help` describes each."
        if argv and argv[0] not in ("-h", "--help"):
            print(f"kagglecv: unknown command {argv[0]!r}\n\n{usage}", file=sys.stderr)
            return 2
        print(usage, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    cmd, rest, prog = argv[0], argv[1:], f"kagglecv {argv[0]}"
    from kagglecv.core.errors import InputError

    try:
        if cmd == "config":
            return config_main(rest, prog)
        if cmd == "predict":
            from kagglecv.inference.predict import main as run
        elif cmd == "backfill":
            from kagglecv.tracking.backfill import main as run
        else:  # download: the Kaggle command line's download subcommand
            from kagglecv.kaggle.__main__ import main as kaggle_main

            return kaggle_main(["download", *rest] if rest[:1] not in (["-h"], ["--help"]) else ["download", "-h"],
                               prog="kagglecv")
        return run(rest, prog=prog)
    except InputError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
