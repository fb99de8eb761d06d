"""Shared test settings: hypothesis runs derandomized (CI sees the same examples every time)."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "course",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "30")),
    deadline=None,                 # numba compiles on first call; timing is the benchmark's job
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("course")


# `make test-fast` skips what is marked slow or browser. Whole modules that compile CUDA kernels
# (PTX, ptxas, the simulator in a child process), start several processes (DDP) or drive
# Chromium are marked here, in one place; single slow tests carry @pytest.mark.slow themselves.
_MODULE_MARKS = {
    "test_browser.py": "browser",
    "test_book.py": "browser",
    "test_kernels_cuda.py": "slow",
    "test_kernels_cuda_sim.py": "slow",
    "test_ddp.py": "slow",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        mark = _MODULE_MARKS.get(item.path.name)
        if mark:
            item.add_marker(getattr(pytest.mark, mark))
