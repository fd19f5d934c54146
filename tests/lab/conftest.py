"""pytest-jupyter for this folder only: a Jupyter server in the test process.

Imported here rather than named in ``pytest_plugins`` so that its autouse
fixtures (an event loop and a Jupyter server clean-up around every test)
apply to the tests of the case desk and to no other test of the suite.
"""

from pytest_jupyter.jupyter_core import *  # noqa: F403
from pytest_jupyter.jupyter_server import *  # noqa: F403
