"""Opening a deployment's state: key file, database, blob folder.

:func:`init_state` creates what is missing (private folders, a fresh keyring,
the schema through Alembic) and is safe to run again; :func:`open_state`
opens an initialised deployment for the store service, the hub's
authenticator or ``cpms-admin``. Key files and database files are created
0600 in 0700 folders: under system-user isolation the user servers, which run
as other accounts, cannot read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .crypto import BlindIndex, Keyring
from .domain.errors import ConfigurationError
from .settings import CpmsSettings
from .store import (
    AuditTrail,
    CaseStore,
    DataKeys,
    LocalBlobBackend,
    make_engine,
    make_session_factory,
    migrate,
    session_scope,
    verify_chain,
)
from .store.audit import ChainReport

__all__ = ["State", "init_state", "open_state"]


@dataclass
class State:
    settings: CpmsSettings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    keys: DataKeys
    audit: AuditTrail
    cases: CaseStore

    @property
    def accounts(self):  # noqa: ANN201 - imported lazily: the registry imports this package
        if not hasattr(self, "_accounts"):
            from .accounts.registry import AccountRegistry

            self._accounts = AccountRegistry(self.sessions, self.keys, self.audit)
        return self._accounts

    @property
    def uploads(self):  # noqa: ANN201 - an UploadStore
        if not hasattr(self, "_uploads"):
            from .store.uploads import UploadStore

            self._uploads = UploadStore(self.sessions, self.keys, self.cases.blobs, self.audit)
        return self._uploads

    @property
    def review(self):  # noqa: ANN201 - a ReviewStore
        if not hasattr(self, "_review"):
            from .store.review import ReviewStore

            self._review = ReviewStore(
                self.sessions,
                self.keys,
                self.audit,
                self.cases,
                link_base=self.settings.public_url + "/services/cpms-review/",
                mail_enabled=bool(self.settings.smtp_host),
            )
        return self._review

    @property
    def followups(self):  # noqa: ANN201 - a FollowUpStore
        if not hasattr(self, "_followups"):
            from .store.followup import FollowUpStore

            self._followups = FollowUpStore(self.cases)
        return self._followups

    def rotate_keys(self) -> int:
        """New primary KEK in the key file; every data key re-wrapped under it."""
        Keyring.rotate(self.settings.key_file)
        self.keys.reload_if_changed()
        self.keyring = self.keys.keyring
        with session_scope(self.sessions) as s:
            moved = self.keys.rewrap_all(s)
            self.audit.append(
                s,
                actor="cpms-admin",
                action="keys.rotate",
                outcome="allowed",
                detail=f"rewrapped={moved} primary={self.keyring.primary_id}",
            )
        return moved

    def verify_audit(self) -> ChainReport:
        with session_scope(self.sessions, write=False) as s:
            return verify_chain(s)

    def close(self) -> None:
        self.cases.audit_commit.close()
        self.engine.dispose()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def init_state(settings: CpmsSettings | None = None) -> State:
    """Create (or complete) a deployment's state and open it."""
    settings = settings or CpmsSettings()
    _private_dir(settings.state_path)
    key_file = Path(settings.key_file)
    _private_dir(key_file.parent)
    if not key_file.exists():
        Keyring.generate(key_file)
    _private_dir(Path(settings.blob_dir))
    engine = make_engine(settings.db_url)
    migrate(engine)
    engine.dispose()
    return open_state(settings)


def open_state(settings: CpmsSettings | None = None) -> State:
    settings = settings or CpmsSettings()
    if not Path(settings.key_file).exists():
        raise ConfigurationError(f"no key file at {settings.key_file}: run `cpms-admin init` first")
    keyring = Keyring.load(settings.key_file)
    engine = make_engine(settings.db_url)
    sessions = make_session_factory(engine)
    keys = DataKeys(keyring, settings.key_file)
    audit = AuditTrail()
    cases = CaseStore(
        sessions, keys, BlindIndex(keyring.index_key), LocalBlobBackend(settings.blob_dir), audit
    )
    return State(settings, engine, sessions, keyring, keys, audit, cases)
