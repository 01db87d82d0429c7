"""Fault run: ``kill -9`` a paper session at random points while signed alerts arrive.

``make faults`` runs it with 100 kills (``python -m tests.faults.kill9 --kills 100``);
``tests/test_faults.py`` runs a 5-kill sample of it. Two real ``memlab paper``
sessions with ``--webhook-port`` replay the same paced synthetic market:

- the *uninterrupted* one runs from start to end;
- the *faulted* one is killed with SIGKILL again and again: right after an alert was
  sent (mid-alert), at a random moment of trading, or while it starts and recovers. After
  each kill it is started again on the same memory folder and webhook port, from the
  bar its book reached (``--after``, as a live feed resumes at "now"), and continues.

A sender thread per session is the charting tool: it posts signed alerts (buys, sells,
with and without ``qty``, and some malformed ones) over loopback HTTP, one after the
other, and resends the same body until it gets a final answer, as a real sender
retries what was not acknowledged (no answer, 5xx, 429, 202, or ``"retry": true``).
Both sessions get the same alerts. At the end, each memory folder is checked:

- lost acknowledged alerts: answered "placed" (at once, or in a replay's first answer)
  but with no order, or no decision (buys) / journal line (sells) for it;
- orders without a decision: any buy in the book with no decision, any sell with no
  journal line (strategy orders included);
- duplicate orders: more than one order or decision for one alert;
- repeated alerts: an alert id answered "accepted" twice, or a drawdown level announced
  twice for the same peak;
- claims left unfinished, and ``memlab memory verify``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET = "faults-whsec-5b0d7e"
AGENT = "trader_001"
SYMBOL = "BTC/USDT"
#: Market seconds per second of the paced replay: 1-minute bars, 20 a second.
SPEED = 1200.0


def sign(raw: bytes) -> str:
    import hmac

    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def alert_client_id(alert_id: str) -> str:
    """The client order id the trader gives an alert's order."""
    from memlab.trader.pipeline import alert_client_id as client_id

    return client_id(AGENT, alert_id)


def make_alert(run: str, i: int) -> dict[str, Any]:
    """Alert ``i`` of a run: the same for both sessions; one in eight is malformed."""
    rng = random.Random(f"{run}-{i}")
    body: dict[str, Any] = {"id": f"{run}-{i:05d}", "symbol": "BTCUSDT", "side": "buy" if i % 2 == 0 else "sell",
                            "strategy": "tv_fault"}
    qty = rng.choice([None, None, 0.5, 1.0, 0.25])
    if qty is not None:
        body["qty"] = qty
    if i % 8 == 7:
        kind = (i // 8) % 6
        if kind == 0:
            body["qty"] = True
        elif kind == 1:
            body["qty"] = "0.01"
        elif kind == 2:
            body["qty"] = 1e-300
        elif kind == 3:
            body["time"] = 1e20
        elif kind == 4:
            body["time"] = -1e15
        else:
            body["id"] = f"{run}-{i:05d}-" + "x" * 130
    return body


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    attempts: int


class Sender(threading.Thread):
    """One charting tool firing alerts at ``url`` in order, each resent until answered."""

    def __init__(self, url: str, run: str, *, may_send: Callable[[int], bool], gap: float = 0.1) -> None:
        super().__init__(name=f"sender-{url}", daemon=True)
        self.url, self.run_id, self.may_send, self.gap = url, run, may_send, gap
        self.answers: dict[str, Answer] = {}
        self.sent = 0
        self.in_flight = threading.Event()
        self.acked = threading.Condition()
        self._stop_at: int | None = None
        self.error: BaseException | None = None

    def stop_after(self, n: int) -> None:
        """Send alerts up to number ``n`` (exclusive), then stop."""
        with self.acked:
            self._stop_at = n
            self.acked.notify_all()

    def run(self) -> None:
        try:
            i = 0
            while True:
                with self.acked:
                    if self._stop_at is not None and i >= self._stop_at:
                        return
                if not self.may_send(i):
                    time.sleep(0.01)  # a mirror waiting for the other sender
                    continue
                self.sent = i + 1
                self._send(make_alert(self.run_id, i))
                i += 1
                time.sleep(self.gap)  # the tool's own pace between alerts
        except BaseException as exc:  # surfaced by the harness
            self.error = exc

    def _send(self, body: dict[str, Any]) -> None:
        body.setdefault("time", datetime.now(UTC).isoformat())
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Memlab-Signature": sign(raw)}
        attempts = 0
        while True:
            attempts += 1
            status, reply = self._post(raw, headers)
            final = status is not None and status != 202 and not reply.get("retry", False)
            if final:
                with self.acked:
                    self.answers[str(body["id"])] = Answer(int(status), reply, attempts)  # type: ignore[arg-type]
                    self.acked.notify_all()
                return
            time.sleep(0.05 + random.random() * 0.05)  # a sender's back-off before resending

    def _post(self, raw: bytes, headers: dict[str, str]) -> tuple[int | None, dict[str, Any]]:
        request = urllib.request.Request(self.url, data=raw, headers=headers)
        self.in_flight.set()
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                return err.code, json.loads(err.read())
            except ValueError:
                return err.code, {"retry": err.code >= 500}
        except (OSError, ValueError):  # refused, reset, cut short: the process is down
            return None, {}
        finally:
            self.in_flight.clear()

    def wait_acked(self, n: int, timeout: float) -> bool:
        with self.acked:
            return self.acked.wait_for(lambda: len(self.answers) >= n or self.error is not None, timeout)


#: The pre-fork launcher: imports memlab once, then forks a process per request that runs
#: ``memlab.cli.main(argv)``, i.e. ``memlab paper ...``; it reaps them and reports their exit.
_LAUNCHER = r"""
import json, os, select, sys
import memlab.cli, memlab.trader.cli, memlab.trader, memlab.connectors, memlab.webhooks, memlab.agent, memlab.memory
import memlab.data, memlab.features, memlab.strategies
out = sys.stdout
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0.05)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        out.flush()
    if not ready:
        continue
    line = sys.stdin.readline()
    if not line:
        break
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            code = memlab.cli.main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    out.write(f"pid {pid}\n")
    out.flush()
"""


class Launcher:
    """Starts ``memlab paper`` processes in a fraction of a second: each is forked from a
    parent that has imported memlab already (a pre-fork server), then runs the CLI's
    ``main`` with the command's arguments, so a restart costs no interpreter start-up."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.exits: dict[int, int] = {}
        self._pids: list[int] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="launcher").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, *values = line.split()
            with self._cond:
                if kind == "pid":
                    self._pids.append(int(values[0]))
                elif kind == "exit":
                    self.exits[int(values[0])] = int(values[1])
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> Child:
        assert self.proc.stdin is not None
        with self._cond:
            known = len(self._pids)
            self.proc.stdin.write(json.dumps({"argv": argv, "env": env, "log": str(log)}) + "\n")
            self.proc.stdin.flush()
            if not self._cond.wait_for(lambda: len(self._pids) > known or self.proc.poll() is not None, 60):
                raise RuntimeError("the launcher did not start the process")
            if len(self._pids) <= known:
                raise RuntimeError("the launcher died")
            return Child(self._pids[known], self)

    def wait(self, pid: int, timeout: float | None) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: pid in self.exits, timeout):
                raise subprocess.TimeoutExpired(str(pid), timeout or 0)
            return self.exits[pid]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


@dataclass
class Child:
    """A launched session process: its pid, a signal, its exit code."""

    pid: int
    launcher: Launcher | None = None
    popen: subprocess.Popen[bytes] | None = None

    def poll(self) -> int | None:
        if self.popen is not None:
            return self.popen.poll()
        assert self.launcher is not None
        with self.launcher._cond:
            return self.launcher.exits.get(self.pid)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        if self.popen is not None:
            return self.popen.wait(timeout)
        assert self.launcher is not None
        return self.launcher.wait(self.pid, timeout)

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Session:
    """One memory folder and webhook port; each :meth:`spawn` is a new ``memlab paper`` process."""

    memory: Path
    bars: int
    seed: int
    port: int = field(default_factory=free_port)
    launcher: Launcher | None = None
    started: int = 0
    proc: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/signal"

    def resume_point(self) -> float | None:
        """The last bar the book recorded: where a restart picks up (as a live feed would)."""
        path = self.memory / "paper_broker.sqlite"
        if not path.exists():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT time FROM prices WHERE symbol=?", (SYMBOL,)).fetchone()
        except sqlite3.Error:
            return None
        finally:
            db.close()
        return None if row is None else float(row[0])

    def spawn(self) -> Child:
        after = self.resume_point()
        cmd = ["paper", "--memory-path", str(self.memory), "--symbol", SYMBOL,
               "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20", "--synthetic", str(self.bars),
               "--seed", str(self.seed), "--speed", str(SPEED), "--webhook-port", str(self.port), "--json"]
        if after is not None:  # the bar the book reached is replayed (its signal re-run), then on
            cmd += ["--after", datetime.fromtimestamp(after - 1, UTC).isoformat()]
        env = {**os.environ, "ALERTS_WEBHOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        env.pop("MEM_ENCRYPTION_KEY", None)
        self.started += 1
        path = self.memory.parent / f"{self.memory.name}.{self.started:03d}.log"
        if self.launcher is not None:
            self.proc = self.launcher.spawn(cmd, env, path)
        else:
            with open(path, "wb") as log:
                popen = subprocess.Popen([sys.executable, "-m", "memlab.cli", *cmd], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
            self.proc = Child(popen.pid, popen=popen)
        return self.proc

    def log_tail(self) -> str:
        path = self.memory.parent / f"{self.memory.name}.{self.started:03d}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def wait_ready(self, timeout: float = 120) -> None:
        """Until this process trades: its heartbeat names it (the trader started and recovered)."""
        from memlab.trader import read_status

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            status = read_status(self.memory)
            if status is not None and status.get("pid") == self.proc.pid and status.get("alive"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"session exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"session did not start within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"session exited by itself with {self.proc.returncode}:\n{self.log_tail()}")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        if code != 0:
            raise RuntimeError(f"session ended with {code}:\n{self.log_tail()}")


def unfinished_claims(memory: Path, pid: int | None = None) -> list[str]:
    """Alert ids claimed but not settled (by process ``pid``, if given)."""
    path = memory / "webhooks.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT alert_id, owner FROM alerts WHERE status IS NULL").fetchall()
    finally:
        db.close()
    return [a for a, owner in rows if pid is None or str(owner or "").startswith(f"{pid}-")]


def _orders(memory: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(f"file:{memory / 'paper_broker.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return [(str(i), c, s) for i, c, s in db.execute(
            "SELECT id, client_id, side FROM orders WHERE parent_id IS NULL ORDER BY id")]
    finally:
        db.close()


def orders_without_decision(memory: Path, client_ids: set[str] | None = None) -> int:
    """Buys with no decision and sells with no journal line (of ``client_ids``, if given)."""
    from memlab.memory import MemoryStores

    orders = [o for o in _orders(memory) if client_ids is None or o[1] in client_ids]
    with MemoryStores(memory) as mem:
        journalled = {e.fields.get("Order") for e in mem.journal.entries()}
        return sum(1 for oid, cid, side in orders
                   if (mem.decisions.find_key(f"{AGENT}:order:{oid}") is None if side == "buy" else cid not in journalled))


def _placed(answer: Answer) -> bool | None:
    """Whether the final answer says the alert was placed (None: it was refused)."""
    body = answer.body
    if answer.status == 200:
        return (body.get("result") or {}).get("status") == "placed"
    if answer.status == 409 and "first" in body:
        first = body["first"]
        if first.get("status") == 200:
            return (first.get("answer") or {}).get("status") == "placed"
    return None


def check(memory: Path, answers: dict[str, Answer]) -> dict[str, Any]:
    """The end state of one memory folder against what its sender was told."""
    from memlab.memory import MemoryStores

    orders = _orders(memory)
    by_client = collections.Counter(cid for _, cid, _ in orders)
    with MemoryStores(memory) as mem:
        entries = list(mem.journal.entries())
        decided = {oid: mem.decisions.find_key(f"{AGENT}:order:{oid}") for oid, _, side in orders if side == "buy"}
        decisions = mem.decisions.frame(agent_id=AGENT)
    journalled = collections.Counter(e.fields.get("Order") for e in entries if e.fields.get("Order"))
    order_of = {cid: (oid, side) for oid, cid, side in orders}
    placed = refused = skipped = lost = 0
    for alert_id, answer in answers.items():
        verdict = _placed(answer)
        if verdict is None:
            refused += 1
            continue
        if not verdict:
            skipped += 1
            continue
        placed += 1
        found = order_of.get(alert_client_id(alert_id))
        if found is None or (decided.get(found[0]) is None if found[1] == "buy" else not journalled[alert_client_id(alert_id)]):
            lost += 1
    # Repeats: an alert accepted twice; a drawdown level said twice for one peak.
    db = sqlite3.connect(f"file:{memory / 'webhooks.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        accepted = collections.Counter(a for (a,) in db.execute("SELECT alert_id FROM requests WHERE status = 200"))
        unfinished = db.execute("SELECT count(*) FROM alerts WHERE status IS NULL").fetchone()[0]
    finally:
        db.close()
    said: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in entries:
        if "Drawdown" in e.fields:
            peak = next((n.rsplit("peak ", 1)[-1] for n in e.notes if "peak" in n), "?")
            level = max((lv for lv in (0.05, 0.10, 0.20) if float(e.fields["Drawdown"].rstrip("%")) / 100 >= lv - 5e-4),
                        default=0.0)
            said[(peak, f"{level:.2f}")] += 1
    verify = subprocess.run([sys.executable, "-m", "memlab.cli", "memory", "--memory-path", str(memory), "verify"],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MEM_ENCRYPTION_KEY": ""})
    buys = decisions[decisions["action"] == "BUY"] if len(decisions) else decisions
    return {
        "alerts answered": len(answers), "placed": placed, "skipped": skipped, "refused": refused,
        "orders": len(orders), "decisions": len(buys),
        "lost acknowledged alerts": lost,
        "orders without a decision": sum(1 for oid, cid, side in orders
                                         if (decided[oid] is None if side == "buy" else not journalled[cid])),
        "duplicate orders": sum(n - 1 for n in by_client.values() if n > 1)
        + sum(n - 1 for n in collections.Counter(buys["key"] if len(buys) else []).values() if n > 1),
        "repeated alerts in": sum(n - 1 for n in accepted.values() if n > 1),
        "drawdown alerts": sum(said.values()),
        "repeated drawdown alerts": sum(n - 1 for n in said.values() if n > 1),
        "unfinished claims": int(unfinished),
        "verify": "OK" if verify.returncode == 0 else f"FAILED: {(verify.stdout + verify.stderr)[-400:]}",
    }


@dataclass
class FaultReport:
    kills: int
    mid_alert: int = 0
    order_without_decision_at_kill: int = 0
    during_startup: int = 0
    uninterrupted: dict[str, Any] = field(default_factory=dict)
    faulted: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        out = []
        for name, result in (("uninterrupted", self.uninterrupted), ("faulted", self.faulted)):
            for key in ("lost acknowledged alerts", "orders without a decision", "duplicate orders",
                        "repeated alerts in", "repeated drawdown alerts", "unfinished claims"):
                if result.get(key):
                    out.append(f"{name}: {key} = {result[key]}")
            if result.get("verify") != "OK":
                out.append(f"{name}: verify {result.get('verify')}")
        if self.faulted.get("alerts answered") != self.uninterrupted.get("alerts answered"):
            out.append(f"alerts answered differ: {self.faulted.get('alerts answered')} with kills, "
                       f"{self.uninterrupted.get('alerts answered')} without")
        return out

    def table(self) -> str:
        rows = [("kill -9", 0, f"{self.kills} ({self.mid_alert} mid-alert, {self.order_without_decision_at_kill} "
                               f"between order and decision, {self.during_startup} while starting)")]
        for key in ("alerts answered", "placed", "skipped", "refused", "orders", "decisions",
                    "lost acknowledged alerts", "orders without a decision", "duplicate orders", "repeated alerts in",
                    "drawdown alerts", "repeated drawdown alerts", "unfinished claims", "verify"):
            rows.append((key, self.uninterrupted.get(key), self.faulted.get(key)))
        width = max(len(str(r[0])) for r in rows)
        lines = [f"{'':{width}}  {'uninterrupted':>14}  with kills", f"{'-' * width}  {'-' * 14}  {'-' * 10}"]
        lines += [f"{name:{width}}  {a!s:>14}  {b}" for name, a, b in rows]
        lines.append(f"{len(self.problems())} problem(s); {self.seconds:.0f} s")
        return "\n".join(lines)


def run_faults(workdir: Path, *, kills: int, seed: int = 1, tail: int = 3, prefork: bool = True) -> FaultReport:
    """Run both sessions with ``kills`` kill -9s of the faulted one; returns the report.
    ``prefork``: start session processes from a :class:`Launcher` (else each is a new
    interpreter, a few seconds of imports per restart)."""
    started = time.monotonic()
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    bars = 4000 + kills * 400  # more than either session reaches: both are stopped, neither runs out
    launcher = Launcher() if prefork else None
    faulted = Session(workdir / "faulted", bars, seed, launcher=launcher)
    reference = Session(workdir / "uninterrupted", bars, seed, launcher=launcher)
    report = FaultReport(kills)
    run_id = f"f{seed}"
    f_sender = Sender(faulted.url, run_id, may_send=lambda i: True)
    r_sender = Sender(reference.url, run_id, may_send=lambda i: i < f_sender.sent)  # the same alerts, mirrored
    reference.spawn()
    faulted.spawn()
    f_sender.start()
    r_sender.start()
    try:
        for _ in range(kills):
            mode = rng.choices(["mid-alert", "trading", "starting"], weights=[5, 3, 2])[0]
            if mode == "starting":
                time.sleep(rng.uniform(0.0, 1.0))  # a random moment of start-up and recovery
                if faulted.proc is not None and faulted.proc.poll() is None:
                    from memlab.trader import read_status

                    status = read_status(faulted.memory)
                    report.during_startup += not (status and status.get("pid") == faulted.proc.pid)
            else:
                faulted.wait_ready()
                time.sleep(rng.uniform(0.0, 1.5))  # trading for a while (fault injection, not a wait)
                if mode == "mid-alert":
                    if not f_sender.in_flight.wait(60):
                        raise RuntimeError("the sender sent nothing for 60 s")
                    time.sleep(rng.uniform(0.0, 0.008))  # some way into the alert's handling
            assert faulted.proc is not None
            pid = faulted.proc.pid
            faulted.kill()
            claims = unfinished_claims(faulted.memory, pid)
            report.mid_alert += bool(claims)
            if claims:
                ids = {alert_client_id(a) for a in claims}
                report.order_without_decision_at_kill += orders_without_decision(faulted.memory, ids)
            faulted.spawn()
            if f_sender.error is not None:
                raise f_sender.error
        # The last run: it takes a few more alerts, then stops gracefully, as does the reference.
        faulted.wait_ready()
        n = len(f_sender.answers) + tail
        if not f_sender.wait_acked(n, 300):
            raise RuntimeError(f"alerts were not answered: {len(f_sender.answers)} of {n}\n{faulted.log_tail()}")
        f_sender.stop_after(f_sender.sent)
        f_sender.join(300)
        r_sender.stop_after(f_sender.sent)
        reference.wait_ready()
        r_sender.join(300)
        for sender in (f_sender, r_sender):
            if sender.error is not None:
                raise sender.error
            if sender.is_alive():
                raise RuntimeError("a sender did not finish")
        faulted.stop()
        reference.stop()
    finally:
        for s in (faulted, reference):
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(30)
        if launcher is not None:
            launcher.close()
    report.faulted = check(faulted.memory, f_sender.answers)
    report.uninterrupted = check(reference.memory, r_sender.answers)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "faults")
    parser.add_argument("--no-prefork", action="store_true", help="start every session process as a new interpreter")
    args = parser.parse_args(argv)
    if args.workdir.exists():
        import shutil

        shutil.rmtree(args.workdir)
    report = run_faults(args.workdir, kills=args.kills, seed=args.seed, prefork=not args.no_prefork)
    print(report.table())
    for problem in report.problems():
        print("PROBLEM", problem)
    with contextlib.suppress(OSError):
        (args.workdir / "summary.json").write_text(json.dumps(
            {"kills": report.kills, "mid_alert": report.mid_alert, "uninterrupted": report.uninterrupted,
             "faulted": report.faulted, "problems": report.problems()}, indent=2, default=str))
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
