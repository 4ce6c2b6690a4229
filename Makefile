# Two commands do all the set-up on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
QUICKSTART_ARGS ?=

.PHONY: quickstart test install install-dev fashion-mnist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip takes torch/torchvision from local disk where the machine provides them (see README, "Installing").
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

# The test install adds the `control` extra (gymnasium, MuJoCo, gym-pusht), so the environment smoke tests run.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[dev,control]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Fashion-MNIST from Debian's dataset-fashion-mnist: use the files if present, else install the package as root,
# else say exactly how to get them.
fashion-mnist:
	@if [ -f "$(FMNIST_DIR)/train-images-idx3-ubyte.gz" ] && [ -f "$(FMNIST_DIR)/t10k-labels-idx1-ubyte.gz" ]; then \
		echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(FMNIST_DIR)" = /usr/share/datasets/fashion-mnist ]; then \
		apt-get update && apt-get install -y dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST not found in $(FMNIST_DIR)." >&2; \
		echo "Install it as root:  apt-get update && apt-get install -y dataset-fashion-mnist" >&2; \
		echo "or point FMNIST_DIR at a folder with the four idx .gz files:  make quickstart FMNIST_DIR=/path/to/fashion-mnist" >&2; \
		exit 1; \
	fi

quickstart: install fashion-mnist
	$(BIN)/jepa quickstart --data_root $(FMNIST_DIR) --overwrite $(QUICKSTART_ARGS)

test: install-dev fashion-mnist
	FASHION_MNIST_ROOT=$(FMNIST_DIR) HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf runs
