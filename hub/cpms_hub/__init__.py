"""CPMS hub side: everything that runs with the hub's trust.

This package holds the keys, the database credentials and the policy. Code in
user servers (``cpms_widgets``, ``cpms_lab``) may import only
:mod:`cpms_hub.domain`; everything else here runs in the hub process, the
``cpms-store`` service or the ``cpms-admin`` command.
"""

__version__ = "0.1.0"
