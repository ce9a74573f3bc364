"""Locks kept in FiftyOne's MongoDB, so they reach workers on other machines.

A lock is one document in the collection ``fiftyone_csl_locks``: its id
names what is locked, and it records its holder (a random token, the host
and the process id) and an expiry. The holder renews the expiry from a
background thread; a holder that dies stops renewing, and its lock can be
taken once it expires, or at once by a process on the same host that sees
the holder's process is gone.

Two kinds are used:

- the **dataset lock** (:func:`dataset_lock`, blocking): every write of a run
  to a dataset (schema changes, bulk values, saved views, run records) holds
  it, so concurrent writers never save a stale copy of the dataset's schema;
- the **run lock** (:func:`run_lock`, failing at once): held for a whole
  training call, so a second call with the same key gets a clear
  :class:`CSLError` instead of racing the first.
"""

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
import uuid

from pymongo.errors import DuplicateKeyError

from ..core.errors import CSLError
from .record import dataset_title

logger = logging.getLogger(__name__)

COLLECTION = "fiftyone_csl_locks"


def lock_ttl() -> float:
    """Seconds a lock outlives its last renewal (``$FIFTYONE_CSL_LOCK_TTL``, default 60)."""
    return float(os.environ.get("FIFTYONE_CSL_LOCK_TTL", 60))


def host_id() -> str:
    """This machine: its host name and boot id (a restarted machine is another host)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}/{boot}"


def _collection():
    import fiftyone.core.odm as foo  # lazy: importing FiftyOne is slow

    return foo.get_db_conn()[COLLECTION]


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs on this host (a zombie, killed but not yet
    reaped by its parent, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def holder_is_dead(doc: dict) -> bool:
    """True if a lock document's holder is a dead process on this host, or
    holds it from another host and has not renewed it within the TTL.

    A live process on this host keeps its lock even when its renewals are
    late: on a loaded machine the renewing thread can wait for the CPU longer
    than the TTL, and taking the lock over then would let two writers in."""
    if doc.get("host") == host_id():
        return not pid_alive(int(doc.get("pid", -1)))
    return doc.get("expires_at") is not None and doc["expires_at"] < _now()


class Lock:
    """One held lock; renews itself until :meth:`release`."""

    def __init__(self, lock_id: str, purpose: str):
        self.lock_id = lock_id
        self.purpose = purpose
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = None

    def _doc(self):
        return dict(
            owner=self.token, host=host_id(), pid=os.getpid(), purpose=self.purpose,
            expires_at=_now() + datetime.timedelta(seconds=lock_ttl()),
        )  # fmt: skip

    def try_acquire(self):
        """Returns None on success, else the document of the live holder."""

        coll = _collection()
        try:
            coll.insert_one({"_id": self.lock_id, **self._doc()})
            self._start()
            return None
        except DuplicateKeyError:
            pass
        current = coll.find_one({"_id": self.lock_id})
        if current is None:
            return self.try_acquire()
        if not holder_is_dead(current):
            return current
        # take over from a dead holder, only if nobody else did meanwhile
        taken = coll.find_one_and_update(
            {"_id": self.lock_id, "owner": current["owner"]}, {"$set": self._doc()}
        )  # fmt: skip
        if taken is None:
            return coll.find_one({"_id": self.lock_id}) or current
        logger.info("took over lock %s from a dead holder (%s pid %s)", self.lock_id, current["host"], current["pid"])
        self._start()
        return None

    def _start(self):
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"fcsl-lock-{self.lock_id}")
        self._thread.start()

    def _renew(self):
        interval = max(lock_ttl() / 3.0, 0.2)
        while not self._stop.wait(interval):
            try:
                _collection().update_one(
                    {"_id": self.lock_id, "owner": self.token},
                    {"$set": {"expires_at": _now() + datetime.timedelta(seconds=lock_ttl())}},
                )
            except Exception:  # a transient database error: try again next time
                logger.debug("could not renew lock %s", self.lock_id, exc_info=True)

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        _collection().delete_one({"_id": self.lock_id, "owner": self.token})


@contextlib.contextmanager
def dataset_lock(dataset, timeout: float | None = None):
    """Holds the write lock of ``dataset``, waiting for other writers (up to
    ``timeout`` seconds, default ``$FIFTYONE_CSL_LOCK_WAIT`` or 1 hour), and
    reloads the dataset's document once held so writes start from its
    current schema and run records (not every sample in memory: a writer
    that edits a sample object reloads that sample itself)."""
    timeout = float(os.environ.get("FIFTYONE_CSL_LOCK_WAIT", 3600)) if timeout is None else timeout
    lock = Lock(f"dataset:{dataset._doc.id}", "write")
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        holder = lock.try_acquire()
        if holder is None:
            break
        if time.monotonic() > deadline:
            raise CSLError(
                f"dataset {dataset_title(dataset)} stayed locked by {holder['host']} pid {holder['pid']} "
                f"for {timeout:.0f} s; nothing was written"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    try:
        dataset._reload(hard=True)
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def run_lock(dataset, run_key: str):
    """Holds the run lock of ``run_key`` on ``dataset`` for a whole call, or
    raises :class:`CSLError` at once if another live process holds it."""
    lock = Lock(f"run:{dataset._doc.id}:{run_key}", "run")
    holder = lock.try_acquire()
    if holder is not None:
        raise CSLError(
            f"run '{run_key}' is in progress in another process ({holder['host']} pid {holder['pid']}); "
            "wait for it to finish or choose another csl_field"
        )
    try:
        yield lock
    finally:
        lock.release()


def run_in_progress(dataset, run_key: str) -> dict | None:
    """The holder of ``run_key``'s run lock if a live process holds it."""
    doc = _collection().find_one({"_id": f"run:{dataset._doc.id}:{run_key}"})
    return None if doc is None or holder_is_dead(doc) else doc
