"""Rung 5: hand-written FlashButterfly kernels.

* ``kernels.cuda``  the fused FFT convolution as a Numba CUDA kernel (GPU, or numba's CUDA
                    simulator on the CPU), trainable through autograd: ``cuda_conv``;
* ``kernels.cpu``   the fused FFT convolution as a Numba CPU kernel (part B of this rung);
* ``kernels.trace`` a tracer that runs the same kernel code with counting arrays and reports the
                    global and shared memory traffic of every thread block.
* ``kernels.cpu``   the fused FFT convolution as a Numba CPU kernel, one row per thread in a
                    buffer that stays in cache, trainable through autograd: ``cpu_conv``.

Submodules are imported on demand, never here: numba reads NUMBA_ENABLE_CUDASIM once, when it
is first imported, so importing ``longconv_edu`` must not import numba behind the user's back.
"""
