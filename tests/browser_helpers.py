"""Drive JupyterLab in Debian's headless Chromium, the way a learner uses the course.

Used by tests/test_browser.py. Three pieces, each usable on its own:

- ``require_browser()``: skip (or, on CI, fail) with a clear reason when /usr/bin/chromium or the
  ``playwright`` package is missing. Playwright never downloads a browser here: it launches the
  system Chromium by path with flags that keep it off the network.
- ``JupyterLabServer``: starts ``python -m jupyter lab`` from this interpreter's environment on
  127.0.0.1, a free port and a random token, with throwaway settings (no news pop-up, no
  update check, every cell rendered), waits until it answers, and always stops it (the whole
  process group, so kernels die with it).
- ``LabPage``: open a notebook, clear and run all cells, wait for them to finish, list error
  outputs, find widgets, and shut the kernel down afterwards.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that talks to the network on its own (no updates, sync, field trials).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "browser"


def require_browser():
    """Skip the calling test when the browser stack is missing; fail instead on CI.

    ``make test`` installs Debian's chromium (apt-get) when /usr/bin/chromium is missing. Where
    that is impossible (no apt, not root) the browser tests skip and say why. On CI (``CI`` or
    ``LONGCONV_REQUIRE_BROWSER`` set) a missing browser is a failure, never a silent skip.
    """
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (install it with `apt-get install -y chromium`, "
                        "which `make test` does when it can)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package `playwright` is missing (it is in requirements.txt)")
    if problems:
        reason = "browser tests need " + "; ".join(problems)
        if os.environ.get("CI") or os.environ.get("LONGCONV_REQUIRE_BROWSER"):
            pytest.fail(reason + " -- and CI/LONGCONV_REQUIRE_BROWSER is set, so this is an error")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab user settings for the test server: no news/update pop-ups, no autosave, and every
# cell kept in the page (the default windowing drops off-screen cells from the DOM).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


class JupyterLabServer:
    """A JupyterLab server on 127.0.0.1 with a token, serving ``root_dir``; stop() always cleans up."""

    def __init__(self, root_dir: Path, workdir: Path):
        self.root_dir = Path(root_dir)
        self.workdir = Path(workdir)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> JupyterLabServer:
        settings = self.workdir / "user-settings"
        for rel, value in _LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        for d in ("config", "runtime", "workspaces"):
            (self.workdir / d).mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),     # ignore the user's config
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        })
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root_dir}",
               f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.root_dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernel(self, path: str) -> None:
        """Delete the session (and kernel) of the notebook at ``path`` (relative to the root)."""
        try:
            for s in self.api("GET", "/api/sessions"):
                if s.get("path") == path:
                    self.api("DELETE", f"/api/sessions/{s['id']}")
        except (urllib.error.URLError, OSError):
            pass

    def shutdown_kernels(self) -> None:
        """Delete every session (and so its kernel): each notebook starts from a fresh kernel."""
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}")
        except (urllib.error.URLError, OSError):
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def _descendants(self) -> list[int]:
        """PIDs of every process below the server (kernels run in sessions of their own, so
        killing the server's process group alone would not reach them)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        out, todo = [], [self.proc.pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out

    def stop(self) -> None:
        """Stop the server and everything it started: kernels via the API, then SIGTERM to the
        server's group, SIGKILL if it lingers, and SIGKILL to any process it left behind."""
        if self.proc is None:
            return
        leftovers = []
        if self.proc.poll() is None:
            self.shutdown_kernels()
            leftovers = self._descendants()
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for pid in leftovers:                   # still there, and still one of ours (not a reused pid)
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"ipykernel" in cmd or b"jupyter" in cmd:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError, PermissionError):
                pass
        self.proc = None
        self._log.close()


def make_lab_root(dest: Path) -> Path:
    """A scratch tree that looks like the repo: notebooks/ copied (running them in the browser
    must never rewrite the committed notebooks), everything else linked, so relative paths such
    as ``../course/results`` still resolve."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name in {".git", ".venv", "artifacts"}:
            continue
        if entry.name == "notebooks":
            shutil.copytree(entry, dest / "notebooks",
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        else:
            (dest / entry.name).symlink_to(entry)
    return dest


# JavaScript run in the page --------------------------------------------------------------------
# The server runs with --LabApp.expose_app_in_browser, so the page has ``window.jupyterapp``: we
# read the notebook's model (outputs with their output_type, execution counts, kernel status)
# instead of guessing from CSS classes, which change between JupyterLab versions.
_JS_STATE = r"""
() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.content || !w.content.model) return null;
  const cells = [];
  for (const c of w.content.model.cells) {
    if (c.type !== 'code') continue;
    const outs = c.outputs.toJSON();
    cells.push({source: c.sharedModel.getSource(), count: c.executionCount,
                errors: outs.filter(o => o.output_type === 'error')
                            .map(o => `${o.ename}: ${o.evalue}`)});
  }
  const ctx = w.sessionContext || (w.context && w.context.sessionContext);
  const kernel = ctx && ctx.session && ctx.session.kernel;
  return {path: w.context.path, kernel: kernel ? kernel.status : 'none',
          kernelName: kernel ? kernel.name : '', cells};
}
"""
# Widgets that failed to render show their error as text in the page, not as an error output.
_JS_PAGE_ERRORS = r"""
() => {
  const root = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)') || document;
  const out = [];
  for (const e of root.querySelectorAll('.jp-OutputArea-output')) {
    const t = e.innerText || '';
    if (/Error displaying widget|Failed to load model class|Error rendering output/.test(t))
      out.push(t.slice(0, 500));
  }
  return out;
}
"""


class LabPage:
    """One browser page on the server: open, run and inspect notebooks like a learner would."""

    def __init__(self, page, server: JupyterLabServer):
        self.page = page
        self.server = server

    def dismiss_popups(self) -> None:
        """Close a news/update notification and accept a "Select Kernel" dialog if one shows."""
        page = self.page
        for toast in page.locator(".jp-Notification-Toast, .Toastify__toast").all():
            try:
                btn = toast.get_by_role("button", name=re.compile(r"^(No|Dismiss|Close)", re.I))
                if btn.count():
                    btn.first.click(timeout=2000)
                else:
                    toast.locator(".jp-toast-dismiss, .Toastify__close-button").first.click(timeout=2000)
            except Exception:
                pass
        dialog = page.locator(".jp-Dialog")
        try:
            if dialog.count() and dialog.first.is_visible() and \
                    re.search(r"Select Kernel", dialog.first.inner_text(), re.I):
                dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click(timeout=5000)
        except Exception:
            pass

    def state(self) -> dict | None:
        """The open notebook as the page holds it: path, kernel status, and per code cell its
        source, execution count and error outputs."""
        return self.page.evaluate(_JS_STATE)

    def open_notebook(self, rel_path: str, timeout_s: float = 90) -> None:
        """Open ``rel_path`` (relative to the server root) and wait until its kernel is idle."""
        page = self.page
        page.goto(f"{self.server.url}/lab/tree/{rel_path}?token={self.server.token}",
                  wait_until="domcontentloaded", timeout=timeout_s * 1000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="attached", timeout=timeout_s * 1000)
        deadline = time.monotonic() + timeout_s
        st = None
        while time.monotonic() < deadline:
            self.dismiss_popups()
            st = self.state()
            if st and st["path"].endswith(rel_path) and st["kernel"] == "idle":
                return
            time.sleep(0.5)
        raise AssertionError(f"the kernel of {rel_path} was not ready after {timeout_s:.0f} s "
                             f"(state {st and {k: st[k] for k in ('path', 'kernel')}})\n"
                             f"server log:\n{self.server.log_tail()}")

    def command(self, name: str) -> None:
        """Run a JupyterLab command, as the menu entry of that name does (the same code path)."""
        self.page.evaluate("name => { window.jupyterapp.commands.execute(name); }", name)

    def start_run_all(self) -> None:
        """Clear every output, then Run > Run All Cells; returns at once (see ``run_finished``)."""
        self.dismiss_popups()
        self.command("notebook:clear-all-cell-outputs")
        self.page.wait_for_function(
            "() => [...window.jupyterapp.shell.currentWidget.content.model.cells]"
            ".every(c => c.type !== 'code' || c.executionCount === null)", timeout=30_000)
        self.command("notebook:run-all-cells")

    def run_finished(self) -> tuple[bool, dict]:
        """(finished, state): finished once every code cell has run, or one failed ("Run All"
        stops there), and the kernel is idle."""
        self.dismiss_popups()
        st = self.state()
        if not st:
            return False, {"cells": [], "kernel": "none"}
        cells = [c for c in st["cells"] if c["source"].strip()]
        failed = any(c["errors"] for c in cells)
        done = all(c["count"] is not None for c in cells)
        return (failed or done) and st["kernel"] == "idle", st

    def run_all(self, timeout_s: float = 180) -> dict:
        """Clear every output, run all cells, wait until they have run; return the state."""
        self.start_run_all()
        deadline = time.monotonic() + timeout_s
        st = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            finished, st = self.run_finished()
            if finished:
                return st
        counts = [c["count"] for c in st["cells"]] if st else None
        raise AssertionError(f"cells did not all finish within {timeout_s:.0f} s; execution counts "
                             f"{counts}, kernel {st and st['kernel']}")

    def errors(self) -> list[str]:
        """Error outputs of the open notebook (``ename: evalue``) and widgets that failed to render."""
        st = self.state() or {"cells": []}
        errs = [f"cell {i}: {e}" for i, c in enumerate(st["cells"]) for e in c["errors"]]
        return errs + self.page.evaluate(_JS_PAGE_ERRORS)

    def screenshot(self, name: str, locator=None) -> Path:
        """Save a PNG under artifacts/browser/ (git-ignored) and print where it is."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        (locator or self.page).screenshot(path=str(path))
        print(f"screenshot saved: {path}")
        return path
