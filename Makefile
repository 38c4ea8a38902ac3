# psscript.infra: two commands do everything on a fresh machine.
#   make up     deploy the whole stack on this machine (inventories/local)
#   make test   every test: lint, sanity, unit, integration, molecule scenarios
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
INVENTORY   ?= inventories/local
SCENARIOS   ?= default failover restore multihost
# The repo is the collection: expose it as ansible_collections/psscript/infra.
COLLECTIONS := $(CURDIR)/.cache/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv engine collection images test-images up down lint sanity unit checks integration molecule test clean

help:
	@echo "make up        deploy the whole stack on this machine"
	@echo "make down      remove the stack's containers, keep data (PURGE=1 removes volumes too)"
	@echo "make test      lint + sanity + unit + integration + molecule ($(SCENARIOS))"
	@echo "make lint | sanity | unit | checks | integration | molecule [SCENARIOS='default failover restore multihost']"

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.stamp

engine:
	@scripts/docker-engine.sh
	@scripts/reserve-test-ports.sh

collection:
	@mkdir -p $(COLLECTIONS)/ansible_collections/psscript
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/psscript/infra

# The stack's images on this machine's engine (built only when their inputs changed).
images: venv engine collection
	$(BIN)/ansible-playbook -i inventories/local playbooks/images.yml

up: venv engine collection
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/site.yml

down: venv engine collection
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/teardown.yml $(if $(PURGE),-e purge=true,)

lint: venv collection
	$(BIN)/ansible-lint --profile production
	$(PY) scripts/role-readme.py --check
	$(BIN)/antsibull-changelog lint

sanity: venv
	scripts/sanity.sh

unit: venv collection
	$(PY) -m pytest tests/unit -q

# Module tests against real PostgreSQL 17, Redis and Sentinel containers of the stack's own images, in two
# groups side by side: they share no container, network, subnet or host port (psscript-dev-backup-*,
# 172.30.0.0/16 and psscript-dev-pgstart; psscript-dev-redis-*, 172.29.0.0/16 and a test-only image name).
# The Redis group's output is kept in .cache/logs and printed when both have ended.
IT_REDIS := tests/integration/test_redis_snapshot.py tests/integration/test_images_refresh.py
integration: images
	@mkdir -p .cache/logs; rm -f .cache/logs/integration-redis.rc; \
	  { $(PY) -m pytest $(IT_REDIS) -q -p no:cacheprovider --durations=10 > .cache/logs/integration-redis.log 2>&1; \
	    echo $$? > .cache/logs/integration-redis.rc; } & \
	  $(PY) -m pytest tests/integration $(addprefix --ignore=,$(IT_REDIS)) -q -p no:cacheprovider --durations=10; pg=$$?; \
	  wait; echo "=== integration, the Redis group (beside the PostgreSQL group above):"; \
	  cat .cache/logs/integration-redis.log; redis=$$(cat .cache/logs/integration-redis.rc 2>/dev/null || echo 1); \
	  echo "=== integration: PostgreSQL group rc=$$pg, Redis group rc=$$redis"; [ "$$pg" = 0 ] && [ "$$redis" = 0 ]

# The scenarios in two lanes side by side (scripts/molecule-lanes.sh; MOLECULE_LANES=1 runs them in turn). Each
# scenario's output is also kept in .cache/logs; a failed scenario's failed tasks are printed again at the end,
# where a CI log's tail shows them.
molecule: venv engine collection
	@scripts/molecule-lanes.sh $(BIN)/molecule $(SCENARIOS)

# The static checks and unit tests, each with its duration.
checks:
	@set -e; for part in lint sanity unit; do t=$$(date +%s); \
	  $(MAKE) --no-print-directory $$part; echo "=== make $$part took $$(( $$(date +%s) - t ))s"; done

# The images the tests run: the stack's and the S3 test endpoint's (moto).
test-images: images
	$(PY) tests/support/s3server.py build

# Every test, each part in turn with its duration (CI's step timings). The tests' images are built while the
# static checks run: building them waits mostly on the Debian mirror and the disk. The tests themselves run in
# turn, not side by side: run beside the static checks, the integration tests took 1144 s instead of 883 s on
# the 2 cores, more than the checks saved.
test: venv engine collection
	@set -e; mkdir -p .cache/logs; rm -f .cache/logs/test-images.rc; t=$$(date +%s); \
	  { if $(MAKE) --no-print-directory test-images > .cache/logs/test-images.log 2>&1; then echo 0; else echo 1; fi \
	    > .cache/logs/test-images.rc; } & \
	  $(MAKE) --no-print-directory checks || { wait; exit 1; }; wait; \
	  if [ "$$(cat .cache/logs/test-images.rc)" != 0 ]; then \
	    tail -n 60 .cache/logs/test-images.log; echo "=== make test-images FAILED (.cache/logs/test-images.log)"; exit 1; fi; \
	  echo "=== make test-images (beside the checks) ended; checks and images took $$(( $$(date +%s) - t ))s"; \
	  for part in integration molecule; do t=$$(date +%s); \
	  $(MAKE) --no-print-directory $$part; echo "=== make $$part took $$(( $$(date +%s) - t ))s"; done

clean:
	rm -rf .cache tests/output
