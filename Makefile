# The two commands:  make demo  (runs every stage on the built-in synthetic region)
#                    make test  (runs the test suite)
# Both create or update .venv with pip from requirements.lock; only python3 is needed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
OUT ?= demo-output

.PHONY: demo test bench venv clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/minescape demo --out $(OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
