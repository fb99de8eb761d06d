"""Rung 5a's Hopper thread-block-cluster primitives for Numba CUDA, as inline PTX (sm_90).

An H100 can run a *cluster* of thread blocks (CTAs) on neighbouring SMs at the same time and let
each read and write the others' shared memory ("distributed shared memory", DSMEM; CUDA C++
Programming Guide, "Thread Block Clusters"; PTX ISA, ``mapa`` and the ``.shared::cluster``
state space). numba-cuda 0.30 has neither a cluster barrier nor DSMEM accesses, so this module
writes the four PTX instructions it needs as Numba intrinsics:

* ``cluster_sync()``: ``barrier.cluster.arrive`` + ``barrier.cluster.wait`` (release /
  acquire by default): every thread of every CTA of the cluster waits for all the others, and
  their shared-memory writes before it are visible to all after it;
* ``dsmem_base(arr, rank)``: the 32-bit ``.shared::cluster`` address of ``arr[0]`` (a shared
  array) in the CTA of cluster rank ``rank`` (``cvta.to.shared`` then ``mapa``), computed once;
* ``dsmem_load(arr, base, i)`` / ``dsmem_store(arr, base, i, v)``: element i of that CTA's copy
  (``ld.shared::cluster`` / ``st.shared::cluster``); ``arr`` only gives the element type.

The cluster's size is a compile-time property of the kernel (``with cluster_dims(C):`` around
the compile: the NVVM annotations ``cluster_dim_x/y/z``, PTX ``.reqnctapercluster``), so an
ordinary launch of a grid that is a multiple of C runs it in clusters (CUDA C++ Programming
Guide: a kernel with a compile-time cluster size is launched with the usual syntax).

numba's simulator cannot run clusters (it runs blocks one after another), so ``emulated``
gives the three DSMEM names for a *one-block emulation*: the cluster's C blocks run as C groups
of threads of one block sharing one shared array (``kernels.cuda`` generates that variant for
the simulator and the tracer, with ``cuda.syncthreads()`` where the cluster barrier goes), and
the remote accesses are plain indexing at an offset.
"""
from __future__ import annotations

import contextlib
import threading

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cuda.extending import intrinsic

from .._checks import check_int

__all__ = ["cluster_sync", "dsmem_base", "dsmem_load", "dsmem_store", "cluster_dims",
           "emulated", "DSMEM_INSTRUCTIONS"]

#: The PTX instructions this module emits (the tests look for each in compiled PTX).
DSMEM_INSTRUCTIONS = ("barrier.cluster.arrive", "barrier.cluster.wait", "mapa.shared::cluster",
                      "ld.shared::cluster", "st.shared::cluster")

_CONSTRAINT = {32: "f", 64: "d"}


def _float_bits(ty, what: str) -> int:
    if not isinstance(ty, types.Float) or ty.bitwidth not in _CONSTRAINT:
        raise TypeError(f"{what} must hold float32 or float64, got {ty}")
    return ty.bitwidth


@intrinsic
def cluster_sync(typingctx):
    """Barrier over the whole cluster, with release/acquire ordering of shared memory."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        asm = ir.InlineAsm(fnty, "barrier.cluster.arrive;\n\tbarrier.cluster.wait;", "~{memory}",
                           side_effect=True)
        builder.call(asm, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def dsmem_base(typingctx, arr, rank):
    """uint32 .shared::cluster address of arr[0] in the CTA of cluster rank ``rank``."""
    if not isinstance(arr, types.Array) or not isinstance(rank, types.Integer):
        return None
    sig = types.uint32(arr, rank)

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        a = context.make_array(aty)(context, builder, value=args[0])
        ptr = builder.ptrtoint(a.data, ir.IntType(64))
        r = context.cast(builder, args[1], sig.args[1], types.uint32)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(64), ir.IntType(32)])
        asm = ir.InlineAsm(
            fnty, "{\n\t.reg .u64 t64;\n\t.reg .u32 t32;\n\tcvta.to.shared.u64 t64, $1;\n\t"
                  "cvt.u32.u64 t32, t64;\n\tmapa.shared::cluster.u32 $0, t32, $2;\n\t}",
            "=r,l,r")
        return builder.call(asm, [ptr, r])

    return sig, codegen


def _address(context, builder, base, index, index_ty, nbytes):
    i = context.cast(builder, index, index_ty, types.uint64)
    i32 = builder.trunc(i, ir.IntType(32))
    return builder.add(base, builder.mul(i32, ir.Constant(ir.IntType(32), nbytes)))


@intrinsic
def dsmem_load(typingctx, arr, base, index):
    """arr's element ``index`` in the CTA whose copy of arr starts at ``base`` (dsmem_base)."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    bits = _float_bits(arr.dtype, "arr")
    sig = arr.dtype(arr, types.uint32, index)

    def codegen(context, builder, sig, args):
        vt = context.get_value_type(sig.return_type)
        addr = _address(context, builder, args[1], args[2], sig.args[2], bits // 8)
        fnty = ir.FunctionType(vt, [ir.IntType(32)])
        asm = ir.InlineAsm(fnty, f"ld.shared::cluster.f{bits} $0, [$1];",
                           f"={_CONSTRAINT[bits]},r,~{{memory}}", side_effect=True)
        return builder.call(asm, [addr])

    return sig, codegen


@intrinsic
def dsmem_store(typingctx, arr, base, index, value):
    """Store ``value`` into arr's element ``index`` of the CTA at ``base`` (dsmem_base)."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    bits = _float_bits(arr.dtype, "arr")
    sig = types.void(arr, types.uint32, index, value)

    def codegen(context, builder, sig, args):
        vt = context.get_value_type(sig.args[0].dtype)
        addr = _address(context, builder, args[1], args[2], sig.args[2], bits // 8)
        v = context.cast(builder, args[3], sig.args[3], sig.args[0].dtype)
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(32), vt])
        asm = ir.InlineAsm(fnty, f"st.shared::cluster.f{bits} [$0], $1;",
                           f"r,{_CONSTRAINT[bits]},~{{memory}}", side_effect=True)
        builder.call(asm, [addr, v])
        return context.get_dummy_value()

    return sig, codegen


_PENDING = threading.local()


def _set_launch_bounds_and_cluster(orig):
    def wrapped(kernel, launch_bounds):
        orig(kernel, launch_bounds)
        dims = getattr(_PENDING, "dims", None)
        if dims is None:
            return
        module = kernel.module
        ann = cgutils.get_or_insert_named_metadata(module, "nvvm.annotations")
        for prop, v in zip(("cluster_dim_x", "cluster_dim_y", "cluster_dim_z"), dims):
            ann.add(module.add_metadata((kernel, ir.MetaDataString(module, prop),
                                         ir.Constant(ir.IntType(32), v))))
    wrapped._cluster_aware = True
    return wrapped


@contextlib.contextmanager
def cluster_dims(C: int):
    """Kernels compiled inside this block get a compile-time cluster of C x 1 x 1 CTAs
    (numba-cuda sets its kernel annotations in ``nvvm.set_launch_bounds``: this wraps it to add
    ``cluster_dim_x/y/z``; a compile needs ``launch_bounds`` given for the wrap to run)."""
    from numba.cuda.cudadrv import nvvm
    C = check_int(C, "C", min=1, max=8)            # 8: the portable limit
    if not getattr(nvvm.set_launch_bounds, "_cluster_aware", False):
        nvvm.set_launch_bounds = _set_launch_bounds_and_cluster(nvvm.set_launch_bounds)
    prev = getattr(_PENDING, "dims", None)
    _PENDING.dims = (C, 1, 1)
    try:
        yield
    finally:
        _PENDING.dims = prev


def emulated(S: int) -> dict:
    """The three DSMEM names for the one-block emulation of a cluster whose CTAs' shared arrays
    are consecutive slices of S values of one array (see the module docstring)."""
    def base(arr, rank):
        return int(rank) * S

    def load(arr, b, i):
        return arr[b + int(i)]

    def store(arr, b, i, v):
        arr[b + int(i)] = v

    return {"dsmem_base": base, "dsmem_load": load, "dsmem_store": store}
