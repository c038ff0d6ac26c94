"""Notifications bound to the database transaction of the write that causes them.

CKAN runs its ``after_dataset_*`` hooks inside the transaction, before COMMIT, so a hook that called
hdxrq at once would report writes that a failing search index, a later plugin or a caller's own rollback
then undoes. Here a hook only *records* the write in its session. Just before the outermost transaction
commits, ``prepare`` turns the recorded writes into notifications (it may still read the database: every
change of the transaction is visible, deletions included); just after the COMMIT, ``deliver`` sends them.
A rollback forgets what was recorded inside the rolled-back transaction or savepoint, so nothing is sent
for it, and a savepoint's release sends nothing: only the outermost COMMIT counts.

A dataset's state before the transaction's first write to it (``remember_old``) is kept with the write,
so one transaction that writes a dataset several times yields one old/new pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

SESSION_KEY = "ckanext.hdxrq.outbox"
"""Where a session keeps what its open transaction has recorded (``Session.info``)."""

N = TypeVar("N")


@dataclass
class DatasetWrite:
    """One dataset touched by the open transaction."""

    dataset_id: str
    seen_in: SessionTransaction | None
    """The innermost transaction (or savepoint) open when the dataset was first seen."""
    old: dict[str, Any] | None = None
    """The dataset before the transaction's first write: ``{}`` when it is new, None when nobody read it."""
    username: str | None = None
    written_in: list[SessionTransaction | None] = field(default_factory=list)
    """Where each write happened: a rolled-back savepoint takes its writes with it."""

    @property
    def written(self) -> bool:
        return bool(self.written_in)


@dataclass
class _Pending(Generic[N]):
    writes: dict[str, DatasetWrite] = field(default_factory=dict)
    ready: list[N] = field(default_factory=list)


class TransactionOutbox(Generic[N]):
    """Records writes per session; prepares notifications before COMMIT and delivers them after it."""

    def __init__(self, prepare: Callable[[list[DatasetWrite]], list[N]], deliver: Callable[[list[N]], None]) -> None:
        self._prepare = prepare
        self._deliver = deliver

    def install(self, session_factory: Any) -> None:
        """Listen to the transactions of ``session_factory`` (CKAN's ``model.Session``); safe to call again."""
        listeners = {
            "before_commit": self._before_commit,
            "after_commit": self._after_commit,
            "after_soft_rollback": self._after_soft_rollback,
            "after_transaction_end": self._after_transaction_end,
        }
        for name, listener in listeners.items():
            if not event.contains(session_factory, name, listener):
                event.listen(session_factory, name, listener)

    def remember_old(self, session: Session, dataset_id: str, load: Callable[[], dict[str, Any]]) -> None:
        """Keep the dataset as ``load`` reads it now, unless this transaction has already seen it."""
        pending = self._pending(session)
        if dataset_id in pending.writes:
            return
        old = load()
        pending.writes[dataset_id] = DatasetWrite(dataset_id, _innermost(session), old=old)

    def record_write(self, session: Session, dataset_id: str, username: str | None, *, created: bool) -> None:
        """Note that the open transaction created, changed or deleted this dataset."""
        pending = self._pending(session)
        write = pending.writes.get(dataset_id)
        if write is None:
            write = DatasetWrite(dataset_id, _innermost(session), old={} if created else None)
            pending.writes[dataset_id] = write
        write.written_in.append(_innermost(session))
        write.username = write.username or username

    # --- transaction events ---

    def _before_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint is released; the transaction goes on
        pending = session.info.get(SESSION_KEY)
        if not pending:
            return
        writes = [write for write in pending.writes.values() if write.written]
        pending.writes.clear()
        if not writes:
            return
        try:
            pending.ready.extend(self._prepare(writes))
        except Exception:  # never let a notification problem fail the user's save
            log.exception("hdxrq: could not prepare notifications for %s", [w.dataset_id for w in writes])

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return
        pending = session.info.get(SESSION_KEY)
        if not pending or not pending.ready:
            return
        ready, pending.ready = pending.ready, []
        try:
            self._deliver(ready)
        except Exception:  # the data is committed: the save has succeeded whatever happens here
            log.exception("hdxrq: could not deliver %d notification(s)", len(ready))

    def _after_soft_rollback(self, session: Session, previous_transaction: SessionTransaction) -> None:
        pending = session.info.get(SESSION_KEY)
        if not pending:
            return
        if previous_transaction.parent is None:
            session.info.pop(SESSION_KEY, None)
            return
        for dataset_id, write in list(pending.writes.items()):
            if _inside(write.seen_in, previous_transaction):
                del pending.writes[dataset_id]
            else:
                write.written_in = [t for t in write.written_in if not _inside(t, previous_transaction)]

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(SESSION_KEY, None)

    @staticmethod
    def _pending(session: Session) -> _Pending[N]:
        pending: _Pending[N] = session.info.setdefault(SESSION_KEY, _Pending())
        return pending


def _innermost(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _inside(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    """Whether ``transaction`` is ``ancestor`` or nested in it."""
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
