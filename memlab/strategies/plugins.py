"""Strategies from outside memlab: a file of your own, a module, an installed package.

Three ways in; each strategy declares itself with :func:`~memlab.strategies.strategy`
(or :func:`~memlab.strategies.register`), then works by name everywhere:

- **a file**: ``--strategy-file PATH`` on every command that takes ``--strategy``, or
  :func:`load_strategy_file` / :func:`use_strategy_files` in Python and notebooks;
- **``MEMLAB_STRATEGIES``**: files and modules, separated by ``os.pathsep`` or commas;
- **an installed package**: an entry point in the group ``memlab.strategies``, e.g.
  ``bollinger = mypackage.strategies:bollinger`` (a function, registered under the entry
  point's name unless it declared itself) or ``all = mypackage.strategies`` (a module,
  imported for the strategies it declares).

The last two are loaded once per process, the first time a strategy is looked up
(:func:`load_plugins`, called by :data:`~memlab.strategies.REGISTRY`). A file or module
that fails to import is an error naming it, the line and the error.

A learned strategy records the strategy it was trained on by :func:`strategy_base`: a
reference (``package.module:function``, or ``/path/to/file.py:function`` for a strategy
file) and the sha256 of its code, the whole file for a strategy file, the function's
source (without decorators) for a module. :func:`base_problem` says whether that record still holds.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import os
import sys
import textwrap
import threading
import types
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from memlab.config import STRATEGIES_ENV, strategy_sources
from memlab.errors import InvalidInputError

ENTRY_POINT_GROUP = "memlab.strategies"

_lock = threading.RLock()
_loading = False
_files: dict[Path, tuple[str, types.ModuleType]] = {}  # a loaded file -> (sha256 of the bytes run, module)
_modules: dict[str, Path] = {}  # the module name a file was loaded as -> the file
_declared: dict[Path, list[str]] = {}  # a loaded file -> the strategy names it declared


@dataclass(frozen=True)
class StrategyBase:
    """What a learned strategy records of the strategy it was trained on."""

    #: ``package.module:function``, or ``/path/to/file.py:function``
    ref: str
    #: sha256 of the strategy file, or of the function's source ("" when unreadable)
    sha256: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _function_source(fn: object) -> str:
    """``fn``'s source without its decorators (declaring another grid changes no signal)."""
    source = textwrap.dedent(inspect.getsource(fn))  # type: ignore[arg-type]
    try:
        node = ast.parse(source).body[0]
    except (SyntaxError, IndexError):  # a lambda's line, say
        return source
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
        return "".join(source.splitlines(keepends=True)[node.lineno - 1:])
    return source


def _one_line(exc: BaseException) -> str:
    text = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    return f"{type(exc).__name__}: {' '.join(text.split())}" if text else type(exc).__name__


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The last line of ``path`` the failure went through."""
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def file_of_module(module_name: str) -> Path | None:
    """The strategy file loaded as module ``module_name``, if it is one."""
    return _modules.get(module_name)


def _file_ref(ref: str) -> Path | None:
    where = ref.rpartition(":")[0]
    return Path(where) if where.endswith(".py") and os.path.isabs(where) else None


def declared_in(path: str | os.PathLike[str]) -> list[str]:
    """The names of the strategies the strategy file at ``path`` declared when it was loaded."""
    return list(_declared.get(Path(path).expanduser().resolve(), []))


def load_strategy_file(path: str | os.PathLike[str]) -> types.ModuleType:
    """Run the strategy file at ``path``, whose declarations register its strategies; returns
    it as a module. Loading it again does nothing unless the file changed.

    Raises:
        InvalidInputError: the file is missing or unreadable, fails to import (the message
            names the file, the line and the error), declares a strategy whose name another
            source already holds, or declares none.
    """
    from memlab.strategies import registry

    shown = os.fspath(path)
    try:
        resolved = Path(path).expanduser().resolve(strict=True)
        data = resolved.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"strategy file {shown}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"strategy file {shown} is a folder, not a .py file") from None
    except OSError as exc:
        raise InvalidInputError(f"strategy file {shown}: cannot be read ({exc.strerror or exc})") from None
    digest = _sha256(data)
    with _lock:
        known = _files.get(resolved)
        if known is not None and known[0] == digest:
            return known[1]
        name = "memlab_strategy_file_" + _sha256(str(resolved).encode())[:12]
        module = types.ModuleType(name)
        module.__file__ = str(resolved)
        before, mark, previous = set(registry._SPECS), len(registry._DECLARED), sys.modules.get(name)
        sys.modules[name], _modules[name] = module, resolved
        try:
            exec(compile(data, str(resolved), "exec"), module.__dict__)  # the bytes hashed are the bytes run
        except Exception as exc:
            for added in set(registry._SPECS) - before:  # nothing half-declared stays behind
                del registry._SPECS[added]
                dict.pop(registry.REGISTRY, added, None)
            if previous is None:
                sys.modules.pop(name, None)
                if known is None:
                    _modules.pop(name, None)
            else:
                sys.modules[name] = previous
            line = _line_in(exc, resolved)
            text = " ".join(str(exc).split()) if isinstance(exc, InvalidInputError) else _one_line(exc)
            raise InvalidInputError(f"strategy file {shown}{f', line {line}' if line else ''}: {text}") from None
        declared = list(dict.fromkeys(registry._DECLARED[mark:]))
        if not declared:
            raise InvalidInputError(f"strategy file {shown} declares no strategy: decorate a function with "
                                    '@strategy("name", grid={...}) from memlab.strategies')
        _files[resolved], _declared[resolved] = (digest, module), declared
    return module


def use_strategy_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None) -> list[str]:
    """Load each strategy file (see :func:`load_strategy_file`) and add it to
    ``$MEMLAB_STRATEGIES``, so that processes started from this one (Dask workers, papermill
    kernels) load it too. Returns the names of the strategies the files declare. ``None``
    does nothing, so a notebook parameter can be passed straight through."""
    if paths is None:
        return []
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    names: list[str] = []
    for item in items:
        load_strategy_file(item)
        resolved = str(Path(item).expanduser().resolve())
        names += declared_in(resolved)
        listed = strategy_sources()
        if resolved not in listed:
            os.environ[STRATEGIES_ENV] = os.pathsep.join([*listed, resolved])
    return names


def _load_source(item: str) -> None:
    if item.endswith(".py") or "/" in item or os.sep in item:
        load_strategy_file(item)
        return
    try:
        importlib.import_module(item)
    except InvalidInputError as exc:
        raise InvalidInputError(f"module {item}: {exc}") from None
    except Exception as exc:
        raise InvalidInputError(f"cannot import module {item!r}: {_one_line(exc)}") from None


def _load_entry_point(ep: EntryPoint) -> None:
    from memlab.strategies.registry import name_of, register

    dist = getattr(ep, "dist", None)
    where = f"entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP}" + (
        f" (package {dist.name} {dist.version})" if dist is not None else "")
    try:
        loaded = ep.load()
        if not isinstance(loaded, types.ModuleType) and name_of(loaded) is None:
            register(ep.name, loaded)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    except Exception as exc:
        raise InvalidInputError(f"{where}: cannot be loaded: {_one_line(exc)}") from None


def load_plugins() -> None:
    """Load ``$MEMLAB_STRATEGIES`` and the ``memlab.strategies`` entry points, once per process.

    A failure is raised (naming the variable or the entry point) and the next lookup tries
    again, so a broken plug-in is never silently missing.
    """
    global _loading
    from memlab.strategies.registry import REGISTRY

    if REGISTRY.loaded:
        return
    with _lock:
        if REGISTRY.loaded or _loading:  # a plug-in reading the registry while it loads
            return
        _loading = True
        try:
            for item in strategy_sources():
                try:
                    _load_source(item)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"{STRATEGIES_ENV}: {exc}") from None
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                _load_entry_point(ep)
            REGISTRY.loaded = True
        finally:
            _loading = False


def strategy_base(name: str) -> StrategyBase:
    """The reference and sha256 of strategy ``name``'s code, for a learned strategy to record."""
    from memlab.strategies.registry import spec_of

    spec = spec_of(name)
    path = _file_ref(spec.ref)
    if path is not None and path in _files:
        return StrategyBase(spec.ref, _files[path][0])
    try:
        source = _function_source(spec.fn)
    except (OSError, TypeError):  # defined where no source is kept (a `python -c` string)
        return StrategyBase(spec.ref, "")
    return StrategyBase(spec.ref, _sha256(source.encode()))


def base_problem(ref: str, sha256: str = "") -> str | None:
    """What is wrong with a recorded base now, as words that follow "its base REF", or None.

    >>> base_problem("memlab.strategies.library:no_such_strategy")
    'is gone: memlab.strategies.library has no function no_such_strategy'
    """
    where, _, attr = ref.rpartition(":")
    if not where or not attr:
        return "is not 'package.module:function' or '/path/to/file.py:function'"
    path = _file_ref(ref)
    if path is not None:
        try:
            now = _sha256(path.read_bytes())
        except FileNotFoundError:
            return f"is gone: {path} no longer exists"
        except OSError as exc:
            return f"cannot be read: {path}: {exc.strerror or exc}"
        if sha256 and now != sha256:
            return (f"changed: {path} is not the file training used "
                    f"(sha256 {sha256[:12]}… then, {now[:12]}… now)")
        return None
    try:
        found: object = importlib.import_module(where)
    except Exception as exc:
        return f"is gone: cannot import {where} ({_one_line(exc)})"
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            return f"is gone: {where} has no function {attr}"
    if not sha256:
        return None
    try:
        now = _sha256(_function_source(found).encode())
    except (OSError, TypeError):
        return f"cannot be checked: the source of {attr} in {where} cannot be read"
    if now != sha256:
        return (f"changed: the source of {attr} in {where} is not what training used "
                f"(sha256 {sha256[:12]}… then, {now[:12]}… now)")
    return None


def resolve_base(ref: str) -> object:
    """The function a recorded base refers to (a strategy file is loaded when needed)."""
    path = _file_ref(ref)
    attr = ref.rpartition(":")[2]
    found: object = load_strategy_file(path) if path is not None else importlib.import_module(ref.rpartition(":")[0])
    for part in attr.split("."):
        found = getattr(found, part)
    return found
