# The two commands: `make demo` and `make test`. Everything else is a step they share.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-hub55 setup lint bench clean

VIEWERS := cpms_widgets/viewers/static/slide_viewer.js cpms_widgets/viewers/static/dicom_viewer.js
# the case desk's front end (extensions/, TypeScript) built by @jupyterlab/builder (not in git)
LABEXT := extensions/cpms_lab/labextension/package.json
LABEXT_SRC := $(wildcard extensions/src/*.ts extensions/style/*) extensions/package.json \
	extensions/tsconfig.json extensions/build-labextension.mjs
LABEXT_DIR := $(VENV)/share/jupyter/labextensions/@cpms/lab

setup: $(STAMPS)/python $(STAMPS)/node $(VIEWERS) $(STAMPS)/labextension

# editable install: the front end is built and linked below, not by the wheel's build hook
$(STAMPS)/python: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# the develop-mode link below points into the checkout: pip would write the wheel's
	@# install.json through it, and the next wheel build would then find that file twice
	rm -rf $(LABEXT_DIR)
	SKIP_JUPYTER_BUILDER=1 $(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/node: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

# the notebook viewers' front end: js/ bundled with OpenSeadragon into one ESM (not in git)
cpms_widgets/viewers/static/slide_viewer.js: js/slide_viewer.js $(STAMPS)/node
	node_modules/.bin/esbuild js/slide_viewer.js --bundle --format=esm --minify --outfile=$@

# the DICOM viewer: a canvas and typed arrays, no third-party code (same ESM in Panel)
cpms_widgets/viewers/static/dicom_viewer.js: js/dicom_viewer.js $(STAMPS)/node
	node_modules/.bin/esbuild js/dicom_viewer.js --bundle --format=esm --minify --outfile=$@

$(LABEXT): $(LABEXT_SRC) $(STAMPS)/node
	npm run --workspace extensions --silent build:prod

# develop mode: JupyterLab finds the front end through a link into the checkout (the wheel
# copies it to share/jupyter/labextensions/@cpms/lab; the editable install enabled the server
# extension in $(VENV)/etc/jupyter); redone after every pip install, which replaces the folder
$(STAMPS)/labextension: $(LABEXT) $(STAMPS)/python
	rm -rf $(LABEXT_DIR)
	mkdir -p $(dir $(LABEXT_DIR))
	ln -s $(CURDIR)/extensions/cpms_lab/labextension $(LABEXT_DIR)
	@mkdir -p $(STAMPS) && touch $@

demo: setup
	$(VENV)/bin/cpms-admin demo
	exec $(VENV)/bin/jupyterhub -f jupyterhub_config.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# the older supported hub: JupyterHub 5.5 alone in $(HUB55), everything else seen from $(VENV)
# (a .pth file adds its site-packages after the hub's own); the tests start the hub, the
# services and cpms-admin from the running interpreter's folder, hence the script there
HUB55 := .venv-hub55
HUB55_TESTS ?= tests/integration/test_hub_versions.py tests/integration/test_review_service.py
test-hub55: setup
	test -x $(HUB55)/bin/python || $$($(PY) -c 'import sys; print(sys._base_executable)') -m venv $(HUB55)
	$(HUB55)/bin/python -c 'import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "zz_cpms_venv.pth").write_text("import site; site.addsitedir(%r)\n" % sysconfig.get_paths(vars={"base": "$(CURDIR)/$(VENV)", "platbase": "$(CURDIR)/$(VENV)"})["purelib"])'
	$(HUB55)/bin/python -m pip install -q --no-deps 'jupyterhub==5.5.4'
	printf '#!$(CURDIR)/$(HUB55)/bin/python\nimport sys\nfrom cpms_hub.admin import main\nsys.exit(main())\n' > $(HUB55)/bin/cpms-admin
	chmod +x $(HUB55)/bin/cpms-admin
	$(HUB55)/bin/python -m pytest -p no:cacheprovider $(HUB55_TESTS) $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check hub cpms_widgets extensions tests benchmarks jupyterhub_config.py

bench: setup
	$(PY) benchmarks/store_api.py
	$(PY) benchmarks/review.py

clean:
	rm -rf $(STAMPS) $(VENV) $(HUB55) node_modules extensions/lib extensions/tsconfig.tsbuildinfo \
		extensions/cpms_lab/labextension
