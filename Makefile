# Two commands do all the set-up on a fresh machine: `make run` and `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= models
# The shared fixtures folder beside the checkout, when present; CI sets it explicitly.
MODEL_MIRROR ?= $(wildcard ../shared/models)
PORT ?= 8080
# The sandbox around model workers (bwrap, libseccomp for its filter) and the buffering proxy in
# front of gunicorn (nginx); the tests add a browser, the compose checker and ab; the
# compose test a Docker engine and debootstrap (to make the base image when it cannot be pulled).
RUN_DEBS := bubblewrap libseccomp2 nginx
TEST_DEBS := $(RUN_DEBS) chromium docker-compose apache2-utils
COMPOSE_DEBS := $(TEST_DEBS) docker.io debootstrap
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test compose-test bench fuzz models venv dev-venv debs run-debs compose-debs lint clean

# --no-compile: Python compiles a module when it is first imported; compiling every file of
# TensorFlow up front cost a fresh clone 10 s.
$(VENV)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

models: venv
	$(BIN)/python -m tools.fetch_models --dest $(MODEL_DIR) $(if $(MODEL_MIRROR),--mirror $(MODEL_MIRROR))

# Debian packages, installed when missing.
define install_debs
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

run-debs:
	$(call install_debs,$(RUN_DEBS))

debs:
	$(call install_debs,$(TEST_DEBS))

compose-debs:
	$(call install_debs,$(COMPOSE_DEBS))

run: venv models run-debs
	MODEL_DIR=$(MODEL_DIR) PORT=$(PORT) $(BIN)/python -m frontend

lint: dev-venv
	$(BIN)/ruff check .

# The tests' processes (pytest-xdist), each taking whole modules, so that a module's server is
# started once. Run alone, the suite keeps the two cores only 62 % busy: it waits on servers,
# timeouts and subprocesses, and a second process fills that time.
TEST_PROCESSES ?= 2

test: dev-venv models debs lint
	docker-compose -f docker-compose.yml config --quiet
	MODEL_DIR=$(MODEL_DIR) $(BIN)/python -m pytest -m "not compose" -n $(TEST_PROCESSES) --dist loadfile

# `docker compose up` for real: starts dockerd when no engine answers, makes the base image when
# it cannot be pulled, builds the image, runs the stack and takes it down again (-v).
compose-test: dev-venv models compose-debs
	MODEL_DIR=$(MODEL_DIR) MODEL_MIRROR=$(abspath $(MODEL_MIRROR)) \
		$(BIN)/python -m pytest -m compose tests/test_compose_stack.py tests/test_swarm_stack.py

# Long fuzzing runs (make test runs a bounded pass): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: dev-venv
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS)

# Throughput and latency of the service against the raw model and the spawn baseline.
bench: dev-venv models debs
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	MODEL_DIR=$(MODEL_DIR) $(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(MODEL_DIR) artifacts
