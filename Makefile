# steadyseg — the two commands of the README:
#   make demo   sets up .venv and runs the main job (`steadyseg demo`) on a small synthetic input
#   make test   sets up .venv (+ chromium for the browser test) and runs the whole test suite, which includes
#               `mkdocs build --strict` (tests/project/test_docs.py): a broken docs link fails it
# and
#   make docs   renders docs/benchmarks.md from benchmarks/results/*.json and builds the site into site/ (offline)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.steadyseg-installed
DEMO_OUT ?= demo-output

.PHONY: demo test docs venv system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# dev includes the docs extra (mkdocs, mkdocs-material, mkdocstrings[python]): the tests build the docs
	$(BIN)/python -m pip install --quiet -e ".[dev,curation,distributed]"
	# cv2.ximgproc (the independent guided-filter check in the tests) lives in opencv-contrib; install the build of
	# the SAME version over opencv-python-headless, which fiftyone and steadyseg depend on (one cv2 module).
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
	  "opencv-contrib-python-headless==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/install_browser.sh

demo: venv
	$(BIN)/steadyseg demo --out $(DEMO_OUT)

test: venv system-deps
	FIFTYONE_DO_NOT_TRACK=true NO_MKDOCS_2_WARNING=1 $(BIN)/python -m pytest

docs: venv
	$(BIN)/python benchmarks/make_page.py render
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) $(DEMO_OUT) build site *.egg-info
