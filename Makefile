# eghn-md — every target does its own set-up into .venv on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch first: a pinned CPU build avoids pulling a multi-GB CUDA wheel. Override with TORCH_SPEC="torch>=2.2".
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo-out

.PHONY: install test test-slow demo clean bench device-kit

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,pymol,sim]"
	touch $@

test: install
	$(PY) -m ruff check eghn_md cli tests && $(PY) -m pytest -q

# everything, with the long fuzzing campaign (400 examples per reader) and any test marked slow
test-slow: install
	EGHN_FUZZ_EXAMPLES=400 $(PY) -m pytest -q -m "slow or not slow"

demo: install
	bash examples/demo.sh $(DEMO_DIR)

bench: install
	$(PY) examples/benchmarks/model_speed.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build *.egg-info

# wheels + MDAnalysisTests data for a CUDA machine without the MD packages or a network (examples/benchmarks/device_check.sh)
device-kit: install
	$(PY) examples/benchmarks/device_kit.py --python $(or $(KIT_PYTHON),3.12)
