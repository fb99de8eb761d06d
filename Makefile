# longconv-edu: two commands are all a user needs.
#   make lab    set up .venv, then JupyterLab on notebooks/ (127.0.0.1, with a token)
#   make test   set up .venv, then every test and every notebook (nbval)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8888
# JupyterLab refuses to run as root unless told; only then do we tell it.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: book help lab test test-fast lint setup browser-deps test-lib test-notebooks notebooks clean
.DEFAULT_GOAL := help

help:
	@echo "make lab        set up, then open JupyterLab on notebooks/ (localhost, token)"
	@echo "make test       set up, then run every test and every notebook"
	@echo "make test-fast  the library tests without the compile-heavy, multi-process and browser ones"
	@echo "make lint       ruff (configured in pyproject.toml)"
	@echo "make notebooks  re-execute every notebook in place (NB=path for one), then strip run metadata"
	@echo "make book       build the course as a static site: open _build/site/index.html"

# One stamp file: the venv is (re)built when requirements.txt or pyproject.toml change.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name longconv-edu --display-name "Python (longconv-edu)" >/dev/null
	touch $@

setup: $(VENV)/.installed

# Serves the repository (so course/exercises/ is reachable too) and opens on notebooks/. A fresh
# token is printed in the URL; the server listens on 127.0.0.1 only.
lab: setup
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) \
	    --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(ROOT_FLAG)

test: setup browser-deps
	$(MAKE) --no-print-directory test-lib
	$(MAKE) --no-print-directory test-notebooks

# The browser tests (tests/test_browser.py) drive Debian's chromium through playwright (pinned in
# requirements.txt); nothing else is downloaded. Installed with apt only when missing; where apt
# or root is unavailable the browser tests skip and say why (on CI they fail instead).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	    if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	    else \
	        echo "note: /usr/bin/chromium is missing and apt-get as root is not available:" \
	             "the browser tests will be skipped"; \
	    fi; \
	fi

test-lib: setup
	$(PY) -m pytest tests

# The inner loop: everything but what conftest.py or the tests mark slow or browser (< 2 minutes).
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow and not browser" tests

lint: setup
	$(VENV)/bin/ruff check .

test-notebooks: setup
	$(PY) -m pytest $(NBVAL_FLAGS) notebooks

# Re-execute every notebook in place (what is committed is what the code prints today), then
# strip what changes on every run but is no result (cell timestamps, widget state), so that a
# one-line change re-commits a few lines. NB=notebooks/06_smooth_kernels.ipynb runs just one.
NB ?= notebooks/*.ipynb
notebooks: setup
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.kernel_name=longconv-edu --ExecutePreprocessor.timeout=600 $(NB)
	$(PY) notebooks/strip_metadata.py $(NB)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# The course as a book: static HTML in _build/site from the committed notebooks (never
# re-executed), with MkDocs + mkdocs-jupyter (pinned in requirements.txt); offline.
book: setup
	$(PY) book/build.py
