"""The 19 image-classification competitions of MLE-bench, as stand-ins in their public layouts (tests/standins),
each run end to end as a new user runs it (configs/<slug>.yaml, the folder or its zip as data.path, a run size)
and graded as MLE-bench's grader grades it, beside the sample submission and the class prior.

    python bench/mlebench.py [--zipped] [--n-train 150] [--epochs 6] [SLUG ...]

Writes bench/results/mlebench-<machine>-<date>.json and prints a table: score, sample, prior, whether the run
beats both, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from machine import cpu_name  # noqa: E402
from machine import slug as machine_slug  # noqa: E402
from standins import SLUGS  # noqa: E402
from standins.run import RUN_SIZE, run_standin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slugs", nargs="*", default=SLUGS)
    ap.add_argument("--zipped", action="store_true", help="give each competition as one zip, as Kaggle's download")
    ap.add_argument("--n-train", type=int, default=150)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=RUN_SIZE["train"]["epochs"])
    ap.add_argument("--tag", default="", help="a name for the results file: mlebench-<tag>-<machine>-<date>.json")
    args = ap.parse_args()
    size = {"train": {**RUN_SIZE["train"], "epochs": args.epochs}}
    rows, t0 = [], time.perf_counter()
    for slug in args.slugs:
        with tempfile.TemporaryDirectory(prefix=f"mlebench-{slug}-") as work:
            try:
                g = run_standin(
                    slug, Path(work), n_train=args.n_train, n_test=args.n_test, zipped=args.zipped, size=size
                )
                row = {
                    "slug": slug,
                    "score": g.score,
                    "sample": g.sample,
                    "prior": g.prior,
                    "lower_is_better": g.lower_is_better,
                    "beats_baselines": g.beats_baselines,
                    "seconds": round(g.seconds, 1),
                    "task": g.meta["task"],
                    "layout": g.meta["layout"],
                    "submission": g.meta["submission"]["format"],
                }
            except Exception as e:  # noqa: BLE001 - a failed competition is a row of the table, not the end
                row = {"slug": slug, "error": str(e).strip().splitlines()[-1][:300]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = cpu_name()
    tag = f"-{args.tag}" if args.tag else ""
    out = HERE / "results" / f"mlebench{tag}-{machine_slug(machine)}-{date.today()}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "zipped": args.zipped,
                "n_train": args.n_train,
                "n_test": args.n_test,
                "run_size": {**RUN_SIZE, **size},
                "seconds": round(time.perf_counter() - t0, 1),
                "rows": rows,
            },
            indent=1,
        )
    )
    ok = [r for r in rows if r.get("beats_baselines")]
    print(f"\n{len(ok)} of {len(rows)} graded above the sample submission and the class prior ({machine}); {out}")
    print(f"{'competition':42} {'score':>9} {'sample':>9} {'prior':>9}  beats  seconds")
    for r in rows:
        if "error" in r:
            print(f"{r['slug']:42} ERROR {r['error'][:80]}")
        else:
            print(
                f"{r['slug']:42} {r['score']:9.4f} {r['sample']:9.4f} {r['prior']:9.4f}  {str(r['beats_baselines']):5}"
                f"  {r['seconds']:7.1f}"
            )


if __name__ == "__main__":
    main()
