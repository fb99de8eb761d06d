"""Rung 5a's compiler tooling: PTX -> ptxas (cubin, resources) -> nvdisasm (SASS), without a GPU.

numba-cuda compiles a kernel to PTX (NVIDIA's virtual ISA) with NVVM and needs no GPU for that
(``numba.cuda.compile_ptx``). What a GPU actually executes is SASS, the machine code ``ptxas``
makes from the PTX; ``nvdisasm`` prints it. Both come as pip wheels (``nvidia-cuda-nvcc`` holds
ptxas, ``nvidia-cuda-nvdisasm`` holds nvdisasm, pinned in requirements.txt at the version of the
NVVM that numba-cuda uses), so this module turns any PTX into:

* ``Resources``: registers per thread, spill stores/loads (bytes), stack frame (bytes), static
  shared memory and constant memory (bytes), as ``ptxas -v`` reports them;
* ``Sass``: the instruction list of each kernel, its loops (a backward branch closes a loop) and
  the counts this course reports (instructions per loop body, shared/global loads and stores,
  floating-point instructions).

Nothing here knows about convolutions: ``kernels.cuda`` compiles its kernels and reads the
counts (``kernels.cuda.sass_report``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from .._checks import check_choice

__all__ = ["tool_path", "ptxas_path", "nvdisasm_path", "Resources", "Sass", "SassLoop",
           "assemble", "disassemble", "parse_sass", "shared_decl_bytes", "ToolMissing", "check_cc", "parse_ptxas"]

TOOLS = ("ptxas", "nvdisasm")


class ToolMissing(RuntimeError):
    """ptxas or nvdisasm is not installed (pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm)."""


def tool_path(name: str) -> str | None:
    """``ptxas`` or ``nvdisasm`` from the pip wheels (nvidia/cu13/bin, or the older
    nvidia/cuda_nvcc/bin and nvidia/cuda_nvdisasm/bin layouts), else from PATH, else None."""
    check_choice(name, "name", TOOLS)
    try:
        import nvidia
        for root in getattr(nvidia, "__path__", []):
            for sub in (f"cu13/bin/{name}", f"cuda_nvcc/bin/{name}", f"cuda_{name}/bin/{name}"):
                cand = os.path.join(root, sub)
                if os.access(cand, os.X_OK):
                    return cand
    except ImportError:
        pass
    return shutil.which(name)


def ptxas_path() -> str | None:
    """``tool_path("ptxas")``: the assembler matching numba-cuda's NVVM (nvidia-cuda-nvcc wheel)."""
    return tool_path("ptxas")


def nvdisasm_path() -> str | None:
    """``tool_path("nvdisasm")``: the SASS disassembler (nvidia-cuda-nvdisasm wheel)."""
    return tool_path("nvdisasm")


def _need(name: str) -> str:
    exe = tool_path(name)
    if exe is None:
        wheel = "nvidia-cuda-nvcc" if name == "ptxas" else "nvidia-cuda-nvdisasm"
        raise ToolMissing(f"{name} not found: pip install {wheel}==13.5.37 (requirements.txt), "
                          f"or put a CUDA toolkit's bin/ on PATH")
    return exe


def check_cc(cc) -> tuple:
    """cc as a (major, minor) tuple of ints, or a TypeError naming it."""
    if not (isinstance(cc, tuple) and len(cc) == 2 and all(isinstance(c, int) and c >= 0
                                                            for c in cc)):
        raise TypeError(f"cc must be a (major, minor) tuple of ints such as (9, 0), got {cc!r}")
    return cc


_SHARED_DECL = re.compile(
    r"^\s*(?:\.visible\s+|\.global\s+|\.extern\s+)?\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d*)\]",
    re.M)


def shared_decl_bytes(ptx: str) -> int:
    """Static shared memory declared in the PTX (dynamic ``extern .shared x[]`` counts 0)."""
    if not isinstance(ptx, str):
        raise TypeError(f"ptx must be a str (PTX text), got {type(ptx).__name__}")
    return sum(int(m) for m in _SHARED_DECL.findall(ptx) if m)


@dataclass(frozen=True)
class Resources:
    """What ``ptxas -v`` says about one kernel for one target (all sizes in bytes)."""
    kernel: str
    arch: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int
    constant: int

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)


_PTXAS_FUNC = re.compile(r"Compiling entry function '(\w+)' for '(sm_\w+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(.*)")


def parse_ptxas(log: str) -> list[Resources]:
    """The ``Resources`` of every entry function in a ``ptxas -v`` log."""
    if not isinstance(log, str):
        raise TypeError(f"log must be a str (ptxas -v output), got {type(log).__name__}")
    out, cur = [], None
    for line in log.splitlines():
        if m := _PTXAS_FUNC.search(line):
            cur = {"kernel": m.group(1), "arch": m.group(2)}
        elif cur is not None and (m := _PTXAS_FRAME.search(line)):
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                       spill_loads=int(m.group(3)))
        elif cur is not None and (m := _PTXAS_USED.search(line)):
            rest = m.group(2)
            smem = re.search(r"(\d+) bytes smem", rest)
            cmem = re.findall(r"(\d+) bytes cmem\[\d+\]", rest)
            out.append(Resources(registers=int(m.group(1)), shared=int(smem.group(1)) if smem else 0,
                                 constant=sum(int(c) for c in cmem),
                                 **{"stack": 0, "spill_stores": 0, "spill_loads": 0, **cur}))
            cur = None
    return out


def assemble(ptx: str, cc=(9, 0)) -> tuple[bytes, list[Resources]]:
    """``ptxas -arch=sm_XY -v``: the cubin (bytes) and the resources of each entry function.

    Raises RuntimeError with ptxas's message if it rejects the PTX (e.g. too much shared data).
    """
    if not isinstance(ptx, str):
        raise TypeError(f"ptx must be a str (PTX text), got {type(ptx).__name__}")
    cc = check_cc(cc)
    exe = _need("ptxas")
    with tempfile.TemporaryDirectory() as d:
        src, obj = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([exe, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src, "-o", obj],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"ptxas -arch=sm_{cc[0]}{cc[1]} rejected the PTX: "
                               f"{(r.stderr or r.stdout).strip()[:2000]}")
        with open(obj, "rb") as f:
            cubin = f.read()
    return cubin, parse_ptxas(r.stdout + r.stderr)


def disassemble(cubin: bytes) -> str:
    """``nvdisasm -c``: the SASS text of a cubin's code sections."""
    if not isinstance(cubin, (bytes, bytearray)):
        raise TypeError(f"cubin must be bytes (from assemble), got {type(cubin).__name__}")
    exe = _need("nvdisasm")
    with tempfile.TemporaryDirectory() as d:
        obj = os.path.join(d, "k.cubin")
        with open(obj, "wb") as f:
            f.write(cubin)
        r = subprocess.run([exe, "-c", obj], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"nvdisasm failed: {(r.stderr or r.stdout).strip()[:2000]}")
    return r.stdout


@dataclass(frozen=True)
class SassLoop:
    """One loop of a SASS function: instructions [start, end] (indices), closed by a backward
    branch at ``end`` to ``start``; ``inner`` if it contains no other loop."""
    start: int
    end: int
    inner: bool

    @property
    def size(self) -> int:
        return self.end - self.start + 1


#: Instruction classes counted per loop body (by opcode prefix).
CLASSES = {
    "shared_load": ("LDS",), "shared_store": ("STS",), "global_load": ("LDG",),
    "global_store": ("STG",), "barrier": ("BAR",),
    "float": ("FADD", "FMUL", "FFMA", "DADD", "DMUL", "DFMA", "HADD", "HMUL", "HFMA"),
    "special": ("MUFU",), "tensor": ("HMMA", "DMMA", "IMMA"),
}


@dataclass
class Sass:
    """The SASS of one kernel function: opcodes (``ops``, predicate guards stripped), the
    addresses, and the loops."""
    name: str
    ops: list[str]
    text: list[str]
    loops: list[SassLoop] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)
    targets: dict = field(default_factory=dict)

    def in_loops(self) -> set[int]:
        """The indices of the instructions inside any loop (the rest is straight-line code)."""
        return {i for lp in self.loops for i in range(lp.start, lp.end + 1)}

    def min_path(self, loop: SassLoop) -> int:
        """Instructions on the shortest path through one iteration of ``loop``: from its first
        instruction to its closing branch, taking at every forward branch the shorter side.
        The rarely taken slow paths (a sin/cos argument reduction, a 64-bit division
        subroutine) are then not counted, so for a body with such branches this is a lower
        bound on the instructions of the common path (NOPs count 0)."""
        path = self.min_path_ops(loop)
        return loop.size if path is None else sum(1 for i in path if self.ops[i] != "NOP")

    def min_path_ops(self, loop: SassLoop) -> list[int] | None:
        """The indices of the instructions on ``min_path``'s path (None: the loop's end is not
        reached by a forward walk)."""
        if not isinstance(loop, SassLoop):
            raise TypeError(f"loop must be a SassLoop (from Sass.loops), got {type(loop).__name__}")
        INF = float("inf")
        dist, prev = {loop.start: 0}, {loop.start: None}
        for i in range(loop.start, loop.end + 1):
            d = dist.get(i, INF)
            if d == INF:
                continue
            d += 0 if self.ops[i] == "NOP" else 1
            if i == loop.end:
                break
            t = self.targets.get(i)
            unconditional = (self.ops[i].startswith("BRA") or self.ops[i].startswith("EXIT")) \
                and not self.guarded[i]
            for nxt in ([t] if t is not None and i < t <= loop.end else []) + \
                    ([] if unconditional else [i + 1]):
                if d < dist.get(nxt, INF):
                    dist[nxt], prev[nxt] = d, i
        if loop.end not in dist:
            return None
        path, i = [], loop.end
        while i is not None:
            path.append(i)
            i = prev[i]
        return path[::-1]

    def count(self, start: int = 0, end: int | None = None) -> dict:
        """Instruction classes in ops[start:end+1] (all when omitted), plus 'total' (NOPs and
        the trailing self-branch of the function end are not instructions that do work)."""
        ops = self.ops[start:(len(self.ops) if end is None else end + 1)]
        ops = [o for o in ops if o != "NOP"]
        out = {"total": len(ops)}
        for cls, prefixes in CLASSES.items():
            out[cls] = sum(1 for o in ops if o.split(".")[0] in prefixes)
        return out


_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_FUNC = re.compile(r"^\s*\.text\.(\w+):", re.M)


def parse_sass(text: str) -> dict[str, Sass]:
    """{function name: Sass} from ``nvdisasm -c`` output, loops found by backward branches."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (nvdisasm output), got {type(text).__name__}")
    out = {}
    parts = _FUNC.split(text)
    for name, body in zip(parts[1::2], parts[2::2]):
        addrs, ops, lines, guarded = [], [], [], []
        for m in _INSN.finditer(body):
            ins = m.group(2).strip()
            guarded.append(bool(re.match(r"^@!?U?P[T\d]+\s+", ins)) and not ins.startswith("@PT"))
            ins = re.sub(r"^@!?U?P[T\d]+\s+", "", ins)          # predicate guard
            ops.append(ins.split()[0] if ins else "")
            addrs.append(int(m.group(1), 16))
            lines.append(ins)
        where = {a: i for i, a in enumerate(addrs)}
        raw, targets = [], {}
        for i, ins in enumerate(lines):
            if ops[i].startswith("BRA"):
                target = _target(ins, body)
                if target is not None and target in where:
                    targets[i] = where[target]
                if target is not None and target in where and where[target] <= i:
                    if where[target] == i:      # BRA to itself: the end-of-function trap
                        continue
                    raw.append((where[target], i))
        loops = [SassLoop(s, e, not any(s <= s2 and e2 <= e and (s2, e2) != (s, e)
                                        for s2, e2 in raw)) for s, e in sorted(set(raw))]
        out[name] = Sass(name, ops, lines, loops, guarded, targets)
    return out


_LABEL = re.compile(r"^\s*\.?(L_x_\d+):\s*$", re.M)


def _target(ins: str, body: str):
    m = re.search(r"0x([0-9a-f]+)", ins)
    if m:
        return int(m.group(1), 16)
    m = re.search(r"`\(\.?(L_x_\d+)\)", ins)
    if not m:
        return None
    # the address of the first instruction after the label
    pos = re.search(r"\.?" + m.group(1) + r":\s*\n", body)
    if not pos:
        return None
    nxt = _INSN.search(body, pos.end())
    return int(nxt.group(1), 16) if nxt else None
