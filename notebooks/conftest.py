"""nbval helpers: after the notebooks run, print how long each one took (slowest first)."""
import collections

_durations = collections.Counter()


def pytest_runtest_logreport(report):
    if report.when == "call":
        _durations[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    terminalreporter.section("notebook run times (slowest first)")
    for path, secs in _durations.most_common():
        terminalreporter.write_line(f"{secs:7.1f} s  {path}")
    terminalreporter.write_line(f"{sum(_durations.values()):7.1f} s  total")
