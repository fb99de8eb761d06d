"""longconv_edu: long convolutions for sequence modeling, from the double loop to FlashButterfly.

A teaching library that implements, rung by rung, Fu et al., *Simple Hardware-Efficient Long
Convolutions for Sequence Modeling* (arXiv 2302.06646, 2023). Shapes throughout: input u is
(B, H, L) (batch, channels, length), kernel k is (H, Lk). Start with ``long_conv`` and
``backends()``; each module opens with what it teaches.

Three floors, each importing only the floors below it:
  longconv_edu          the rungs (conv, fft, butterfly, io_model, kernels, regularize, params,
                        layers, learned, dispatch, timing)
  longconv_edu.lab      experiments on the rungs (data, models, train, experiments, bench, viz)
  longconv_edu.course   what a learner touches (exercises, widgets, animations)
"""
__version__ = "0.2.0"   # the one version source (pyproject.toml reads it)

from .butterfly import butterfly_conv, butterfly_kernel_spectrum, three_pass_conv
from .conv import bidirectional_conv, circular_conv, direct_conv, fft_conv, toeplitz, toeplitz_conv
from .dispatch import backends, long_conv
from .fft import (
                   bit_reversal_permutation,
                   butterfly_factors,
                   butterfly_stage,
                   dft_matrix,
                   fft_iterative,
                   fft_recursive,
                   fft_size,
                   monarch_dft,
                   monarch_factors,
                   twiddle_grid,
                   twiddles,
)
from .layers import LongConv
from .learned import LearnedButterflyConv, learned_butterfly_conv, learned_long_conv
from .params import param_groups, tag_params
from .regularize import kernel_dropout, smooth, squash, ssm_kernel

__all__ = ["LearnedButterflyConv", "LongConv", "backends", "bidirectional_conv",
           "bit_reversal_permutation", "butterfly_conv", "butterfly_factors",
           "butterfly_kernel_spectrum", "butterfly_stage", "circular_conv", "dft_matrix",
           "direct_conv", "fft_conv", "fft_iterative", "fft_recursive", "fft_size", "kernel_dropout",
           "learned_butterfly_conv", "learned_long_conv", "long_conv", "monarch_dft",
           "monarch_factors", "param_groups", "smooth", "squash", "ssm_kernel", "tag_params",
           "three_pass_conv", "toeplitz", "toeplitz_conv", "twiddle_grid", "twiddles"]
