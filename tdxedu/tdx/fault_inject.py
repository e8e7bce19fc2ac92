"""Fault injection: make a SEAMCALL (or TDCALL) leaf return a chosen status at its Nth call.

In the spirit of the kernel's fail_* framework (`Documentation/fault-injection/`,
`should_fail()` with its `interval` / `times` knobs): a test arms a fault on one leaf of one
`TdxModule`, runs a flow, and checks what the caller did with the status. A failed call does
not run its handler, so the module's state is unchanged, as when the real module rejects an
operand before touching anything; the call is still counted and traced, so a trace shows the
injected status where the leaf ran.

    from tdxedu.tdx.fault_inject import inject
    with inject(module, "tdh_mem_page_remove", TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT) as f:
        ...                      # the 1st REMOVE from now on returns BUSY, later ones run
    f.hits                       # [(call number, lp, args)] of the calls that were failed

`inject(module, leaf, status, nth=1, times=1, lp=None, run=False, rcx=0, rdx=0, r8=0)`: fail
`times` consecutive calls of `leaf` starting with the `nth` one counted from now (`times=0`:
every call from the `nth` on); `lp` restricts the count to calls issued on that logical
processor; `rcx`/`rdx`/`r8` are the output registers of the failed call. `run=True` lets the
handler run and only replaces its status: a call that did its work but reports `status`
(TDX_NO_HKID_READY_TO_WBCACHE when another CPU already wrote the caches back,
TDX_VCPU_NOT_ASSOCIATED for a vCPU flushed before). Several faults may be armed at
once (a list per module); leaving the `with` block, or `fault.remove()`, disarms one, and
`clear(module)` disarms all.
"""

from __future__ import annotations

import difflib

from .core import Result
from .leaves import Leaf
from .status import Status


class Fault:
    """One armed fault: which leaf, which calls, which status; `hits` records each failure."""

    def __init__(
        self,
        module,
        leaf: str,
        status,
        *,
        nth: int = 1,
        times: int = 1,
        lp: int | None = None,
        run: bool = False,
        rcx: int = 0,
        rdx: int = 0,
        r8: int = 0,
    ):
        self.module = module
        self.leaf = check_leaf(module, leaf)
        for name, value, low in (("nth", nth, 1), ("times", times, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"inject: {name} must be an int >= {low}, got {value!r}")
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int)):
            raise ValueError(f"inject: lp must be None or an int, got {lp!r}")
        self.status = status if isinstance(status, Status) else Status(status)
        self.nth, self.times, self.lp, self.run = nth, times, lp, bool(run)
        self.outputs = (rcx, rdx, r8)
        self.calls = 0  # calls of `leaf` (on `lp`) seen since the fault was armed
        self.hits: list[tuple[int, int, tuple]] = []

    def should_fail(self, lp: int, args: tuple) -> bool:
        if self.lp is not None and lp != self.lp:
            return False
        self.calls += 1
        n = self.calls - self.nth
        if n < 0 or (self.times and n >= self.times):
            return False
        self.hits.append((self.calls, lp, args))
        return True

    def result(self, leaf: str) -> Result:
        """The Result a failed call returns instead of running."""
        return Result(spelled(leaf), self.status, *self.outputs)

    def remove(self) -> None:
        faults = getattr(self.module, "fault_injector", None)
        if faults is not None and self in faults:
            faults.remove(self)
            if not faults:
                self.module.fault_injector = None

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        when = (
            f"call {self.nth}" + (f"..{self.nth + self.times - 1}" if self.times != 1 else "")
            if self.times
            else f"calls {self.nth}.."
        )
        return f"<Fault {self.leaf} -> {self.status} at {when}, {len(self.hits)} hit(s)>"


def check_leaf(module, leaf: str) -> str:
    """The handler-backed leaf name (`tdh_mem_page_remove`, `tdg_mem_page_accept`, ...)."""
    if not isinstance(leaf, str):
        raise TypeError(f"inject: leaf must be a str, got {type(leaf).__name__}")
    if hasattr(type(module), "_h_" + leaf):
        return leaf
    known = sorted(n[3:] for n in dir(type(module)) if n.startswith("_h_"))
    close = difflib.get_close_matches(leaf, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"inject: {leaf!r} is not a leaf the model runs{hint}")


def inject(module, leaf: str, status, **kw) -> Fault:
    """Arm a fault on `module` (see the module docstring); returns it (a context manager)."""
    fault = Fault(module, leaf, status, **kw)
    if getattr(module, "fault_injector", None) is None:
        module.fault_injector = []
    module.fault_injector.append(fault)
    return fault


def clear(module) -> None:
    """Disarm every fault of `module`."""
    module.fault_injector = None


def fault_for(faults: list[Fault], leaf: str, lp: int, args: tuple) -> Fault | None:
    """Called by the module before it runs a leaf: the armed fault that fires for this call,
    or None. Every armed fault on `leaf` counts the call; the first that fires decides."""
    hit = None
    for f in faults:
        if f.leaf == leaf and f.should_fail(lp, args) and hit is None:
            hit = f
    return hit


def spelled(leaf: str) -> str:
    """`tdh_mem_page_remove` -> "TDH.MEM.PAGE.REMOVE", as the handlers name their results."""
    key = leaf.upper()
    return Leaf[key].spelled if key in Leaf.__members__ else key.replace("_", ".")


__all__ = ["Fault", "inject", "clear", "fault_for", "check_leaf"]
