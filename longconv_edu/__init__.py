"""longconv_edu: long convolutions for sequence modeling, from the double loop to FlashButterfly.

A teaching library that implements, rung by rung, Fu et al., *Simple Hardware-Efficient Long
Convolutions for Sequence Modeling* (arXiv 2302.06646, 2023). Shapes throughout: input u is
(B, H, L) (batch, channels, length), kernel k is (H, Lk). Start with ``long_conv`` and
``backends()``; each module opens with what it teaches.
"""
from .conv import (bidirectional_conv, circular_conv, direct_conv, fft_conv, toeplitz,
                   toeplitz_conv)
from .dispatch import backends, long_conv
from .fft import (bit_reversal_permutation, butterfly_factors, butterfly_stage, dft_matrix,
                  fft_iterative, fft_recursive, monarch_dft, monarch_factors, twiddle_grid, twiddles)
from .butterfly import butterfly_conv, butterfly_kernel_spectrum, three_pass_conv

__version__ = "0.1.0"
from .layers import LongConv, param_groups
from .regularize import kernel_dropout, smooth, squash, ssm_kernel
from .learned import LearnedButterflyConv, learned_butterfly_conv
