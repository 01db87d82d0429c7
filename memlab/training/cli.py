"""``memlab nightly`` and ``memlab train``: historical training from the command line.

A cron line for a nightly run at 02:00 (from the project folder)::

    0 2 * * * cd /path/to/memlab && .venv/bin/memlab nightly --symbols GOOG EURUSD >> runs/cron.log 2>&1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, helptext in (("nightly", "run notebooks/nightly_training.ipynb with papermill into runs/YYYY-MM-DD/"),
                           ("train", "walk-forward training straight into memory (no notebook)")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--symbols", nargs="+", default=["GOOG", "EURUSD"], help="samples, .csv/.parquet paths, or synthetic:SEED[:BARS]")
        p.add_argument("--strategy", default="sma_cross")
        p.add_argument("--start", default=None, help="first date to use (UTC)")
        p.add_argument("--end", default=None, help="last date to use (UTC)")
        p.add_argument("--memory-path", default=None)
        p.add_argument("--scheduler", default=None, help="'local' for a Dask LocalCluster, or tcp://HOST:8786")
        p.set_defaults(func=_nightly if name == "nightly" else _train)
        if name == "nightly":
            p.add_argument("--notebook", default="notebooks/nightly_training.ipynb")
            p.add_argument("--out", default="runs", help="folder for the dated run folders")


def _parameters(args: argparse.Namespace) -> dict[str, object]:
    from memlab.config import memory_path

    return {"symbols": args.symbols, "strategy": args.strategy, "start": args.start, "end": args.end,
            "memory_path": str(memory_path(args.memory_path)), "scheduler": args.scheduler}


def _nightly(args: argparse.Namespace) -> int:
    from memlab.training.runner import NightlyRunError, run_nightly

    try:
        run_dir = run_nightly(_parameters(args), notebook=args.notebook, out_root=args.out)
    except NightlyRunError as exc:
        print(f"memlab nightly: FAILED: {exc}")
        return 1
    print(f"nightly run finished: {run_dir}/ (executed notebook and summary.json)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from memlab.training.trainer import TrainingConfig, train

    summary = train(TrainingConfig(**_parameters(args)))  # type: ignore[arg-type]
    for symbol, result in summary["symbols"].items():
        print(f"{symbol}: chose {result['chosen']}; out-of-sample sharpe {result['out_of_sample_sharpe']:.2f} "
              f"(in-sample {result['in_sample_sharpe']:.2f}); {result['decisions_recorded']} decisions recorded")
    out = Path("runs") / "last_training_summary.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    return 0
