"""Checkers for the course exercises, one module per rung: ``check("name", your_function)``.

    >>> from longconv_edu.course.exercises import check, list_exercises
    >>> check("causal_fft_conv", my_fft_conv)

``core`` holds the checker; each ``rungN`` module registers its rung's exercises on import. The
exercise notebooks are in course/exercises/, their solutions in course/solutions/.
"""
from . import rung1, rung2, rung3, rung4, rung5, rung6, rung7, rung8  # noqa: F401  (register on import)
from .core import EXERCISES, Exercise, check, list_exercises, register
from .rung5 import shared_memory_plan, thread_butterflies
from .rung7 import is_causal
from .rung8 import block_drift_reference, dft_block_init_reference

__all__ = ["EXERCISES", "Exercise", "block_drift_reference", "check", "dft_block_init_reference",
           "is_causal", "list_exercises", "register", "shared_memory_plan", "thread_butterflies"]
