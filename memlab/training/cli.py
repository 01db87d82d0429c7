"""``memlab nightly`` and ``memlab train``: historical training from the command line.

A cron line for a nightly run at 02:00 (from the project folder)::

    0 2 * * * cd /path/to/memlab && .venv/bin/memlab nightly --symbols GOOG EURUSD >> runs/cron.log 2>&1

A strategy of your own: ``--strategy bollinger --strategy-file my_strategies.py`` (the file
is loaded here, in Dask workers and in the nightly notebook's kernel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memlab.cli import timestamp


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from memlab.strategies.cli import add_strategy_file_argument

    for name, helptext in (("nightly", "run notebooks/nightly_training.ipynb with papermill into runs/YYYY-MM-DD/"),
                           ("train", "walk-forward training straight into memory (no notebook)")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--symbols", nargs="+", type=market_spec, default=["GOOG", "EURUSD"], help="samples, .csv/.parquet paths, or synthetic:SEED[:BARS]")
        p.add_argument("--strategy", default="sma_cross", help="a strategy by name (default sma_cross)")
        add_strategy_file_argument(p)
        p.add_argument("--start", type=timestamp, default=None, help="first date to use (UTC)")
        p.add_argument("--end", type=timestamp, default=None, help="last date to use (UTC)")
        p.add_argument("--memory-path", default=None)
        p.add_argument("--scheduler", default=None, help="'local' for a Dask LocalCluster, or tcp://HOST:8786")
        p.add_argument("--min-dsr", type=_probability, default=0.5, metavar="P",
                       help="refuse parameters whose deflated Sharpe ratio is below P (default 0.5)")
        p.add_argument("--force", action="store_true",
                       help="write parameters even when out-of-sample Sharpe <= 0 or the DSR is below --min-dsr")
        p.set_defaults(func=_nightly if name == "nightly" else _train)
        if name == "nightly":
            p.add_argument("--notebook", default="notebooks/nightly_training.ipynb")
            p.add_argument("--out", default="runs", help="folder for the dated run folders")


def market_spec(text: str) -> str:
    """A market for training: a sample name, ``synthetic:SEED[:BARS]`` or an existing .csv/.parquet file."""
    from memlab.cli import existing_file

    if text.startswith("synthetic:"):
        parts = text.split(":")
        try:
            numbers = [int(p) for p in parts[1:] if p]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: synthetic:SEED[:BARS] takes whole numbers") from None
        if len(parts) > 3 or any(n < 0 for n in numbers) or (len(parts) == 3 and numbers[-1] < 1):
            raise argparse.ArgumentTypeError(f"{text!r}: use synthetic:SEED[:BARS] with SEED >= 0 and BARS >= 1")
        return text
    if Path(text).suffix.lower() in (".csv", ".parquet", ".pq"):
        return existing_file(text)
    return text  # a sample name: training names the known ones if it is not


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a deflated Sharpe ratio bar is in [0, 1], got {text}")
    return value


def _parameters(args: argparse.Namespace) -> dict[str, object]:
    from memlab.config import memory_path

    return {"symbols": args.symbols, "strategy": args.strategy, "start": args.start, "end": args.end,
            "memory_path": str(memory_path(args.memory_path)), "scheduler": args.scheduler,
            "min_dsr": args.min_dsr, "force": args.force}


def _strategy_files(args: argparse.Namespace) -> str | list[str] | None:
    """Load ``--strategy-file``s (an error names the file) and return them for the notebook."""
    from memlab.strategies import use_strategy_files

    use_strategy_files(args.strategy_file)
    files = [str(Path(f).resolve()) for f in args.strategy_file]
    return None if not files else files[0] if len(files) == 1 else files


def _nightly(args: argparse.Namespace) -> int:
    from memlab.strategies import get
    from memlab.training.runner import NightlyRunError, run_nightly

    parameters = {**_parameters(args), "strategy_file": _strategy_files(args)}
    get(args.strategy)  # an unknown name is a usage error here, not a failed notebook cell
    try:
        run_dir = run_nightly(parameters, notebook=args.notebook, out_root=args.out)
    except NightlyRunError as exc:
        print(f"memlab nightly: FAILED: {exc}")
        return 1
    print(f"nightly run finished: {run_dir}/ (executed notebook, summary.json)\n"
          f"report: {run_dir / 'nightly_training.html'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from memlab.backtest.selection import SelectionRefused
    from memlab.training.trainer import TrainingConfig, train

    _strategy_files(args)
    try:
        summary = train(TrainingConfig(**_parameters(args)))  # type: ignore[arg-type]
    except SelectionRefused as exc:
        print(f"memlab train: refused: {exc}")
        return 1
    for symbol, result in summary["symbols"].items():
        sel = result.get("selection") or {}
        stats = ", ".join(f"{label} {sel[k]:.2f}" for k, label in (("dsr", "DSR"), ("pbo", "PBO"), ("spa_pvalue", "SPA p"))
                          if sel.get(k) is not None)
        data = result["data"]
        print(f"{symbol}: chose {result['chosen']} (best of {sel.get('n_trials', '?')} sets{'; ' + stats if stats else ''}); "
              f"out-of-sample sharpe {result['out_of_sample_sharpe']:.2f} (in-sample {result['in_sample_sharpe']:.2f}) "
              f"on {data['first_bar'][:10]} .. {data['last_bar'][:10]}; {result['decisions_recorded']} decisions recorded")
    for symbol, refused in summary["refused"].items():
        print(f"{symbol}: refused, nothing written: {refused['reason']}")
    out = Path("runs") / "last_training_summary.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    return 0
