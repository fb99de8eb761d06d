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
