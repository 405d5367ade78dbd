"""Compilation flags of every numba kernel, in one place.

- `cache=True`: compiled machine code is kept next to the module, so a process starts warm after the first run.
- `nogil=True`: a kernel releases the GIL, so a thread (the LISTEN loop, a test's roles) keeps running.
- `error_model="numpy"`: division by zero yields inf/NaN as in NumPy instead of raising; kernels never raise.
- `fastmath=False`: results must equal the naive versions, so no reassociation of floating-point sums.

With `NUMBA_DISABLE_JIT=1` the kernels run as plain Python (how coverage sees their bodies); NumPy's floating-point
warnings are silenced there, since compiled kernels do not emit them either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba import config, njit

F = TypeVar("F", bound=Callable[..., Any])

_compile = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


def kernel(function: F) -> F:
    """Compile `function` as a numba kernel with the project's flags."""
    if getattr(config, "DISABLE_JIT", False):

        @functools.wraps(function)
        def quiet(*args: Any, **kwargs: Any) -> Any:
            with np.errstate(all="ignore"):
                return function(*args, **kwargs)

        return quiet  # type: ignore[return-value]
    compiled: F = _compile(function)  # type: ignore[assignment]
    return compiled
