"""Fan work out with Dask: in-process, a LocalCluster, or a real cluster by address.

``scheduler=None`` runs tasks here one by one; ``"local"`` starts a LocalCluster on this
machine; ``"tcp://HOST:8786"`` connects to a running ``dask scheduler`` whose workers
have memlab installed. Results come back in input order, with a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fan_out(func: Callable[[T], R], items: Sequence[T], *, scheduler: str | None = None,
            desc: str = "tasks", progress: bool = True, local_processes: bool = True) -> list[R]:
    """``[func(item) for item in items]``, spread over Dask workers when ``scheduler`` says so."""
    from tqdm.auto import tqdm

    if scheduler is None:
        return [func(item) for item in tqdm(items, desc=desc, disable=not progress)]
    from dask.distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=local_processes,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout="30s")
    try:
        futures = client.map(func, list(items), pure=False)
        order = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        with tqdm(total=len(futures), desc=f"{desc} on {scheduler}", disable=not progress) as bar:
            for future in as_completed(futures):
                results[order[future.key]] = future.result()
                bar.update(1)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
