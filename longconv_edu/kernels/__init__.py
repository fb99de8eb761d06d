"""Rung 5: hand-written fused kernels for the FFT convolution (imported on demand, never here).

* ``kernels.cpu``  the fused FFT convolution as a Numba CPU kernel, one row per thread in a
                   buffer that stays in cache, trainable through autograd: ``cpu_conv``.
"""
