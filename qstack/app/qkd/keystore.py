"""A key management entity's key store (sans-I/O): the logic behind ETSI GS QKD 014.

One :class:`KeyStore` per KME (key management entity, one per node). It
holds, per peer KME, the key material QKD runs between the two nodes made
(identical at both ends: both KMEs are fed the same blocks, under the same
block ids) and serves it to SAEs (secure application entities) the way ETSI
GS QKD 014 V1.1.1 (2019) defines: a **master** SAE asks its KME for keys to
share with a **slave** SAE attached to the peer KME (``enc_keys``); the
slave SAE then asks its own KME for the same keys by their ``key_ID``
(``dec_keys``). ``specs/kms.md`` is the normative text; here:

* each fed block is split in two halves, one for each KME's role as master
  (the lower-named KME the first half): two masters on either side never
  hand out the same bytes;
* ``enc_keys`` takes the next bytes of this KME's half and returns the keys
  with a :class:`Reservation` (key ids, offsets, the two SAEs), which the
  driver hands to the peer KME's store (:meth:`KeyStore.apply`): the
  KME-to-KME message. The peer takes the same bytes of the same half and
  keeps each key for the named slave SAE only;
* ``dec_keys`` gives each key once, to that slave SAE, and forgets it:
  never twice, never to a third SAE.

Errors raise :class:`KmsError` with an :class:`~qstack.core.errors.ErrorCode`
and the HTTP status ETSI GS QKD 014 gives it (400 bad request, 401
unauthorised, 503 no key now). Sizes are in bits, as in the standard
(multiples of 8 here: keys are whole bytes).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from qstack.core.errors import ErrorCode, QStackError

__all__ = ["KeyStore", "KmsError", "Reservation", "HTTP_STATUS"]

#: ETSI GS QKD 014's status code for each error.
HTTP_STATUS = {ErrorCode.APP_KMS_BAD_REQUEST: 400, ErrorCode.APP_KMS_UNAUTHORIZED: 401,
               ErrorCode.APP_KMS_NO_KEY: 503}


class KmsError(QStackError):
    """A request the KME refuses; ``status`` is its HTTP status code."""

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def _bad(msg: str) -> KmsError:
    return KmsError(ErrorCode.APP_KMS_BAD_REQUEST, msg)


@dataclass(frozen=True)
class Reservation:
    """KME -> peer KME: keys ``key_ids`` (``size`` bits each) were given to
    ``master_sae`` for ``slave_sae``, taken from ``master_kme``'s half of the
    shared material from byte ``offset`` on, in order."""

    master_kme: str
    slave_kme: str
    master_sae: str
    slave_sae: str
    size: int
    offset: int
    key_ids: tuple[str, ...]


@dataclass
class _Pool:
    """Key material shared with one peer KME: the two halves as byte streams."""

    mine: bytearray = field(default_factory=bytearray)     # what this KME hands out as master
    theirs: bytearray = field(default_factory=bytearray)   # what the peer hands out as master
    mine_taken: int = 0        # bytes of this half handed out so far (absolute offsets)
    theirs_taken: int = 0
    mine_base: int = 0         # absolute offset of mine[0] (what was handed out is dropped)
    theirs_base: int = 0
    blocks: set = field(default_factory=set)


class KeyStore:
    """The key store of KME ``kme_id``.

    ``saes``: every SAE id of the network and the KME it is attached to.
    ``key_size``: the default key size (bits); ``min_key_size``,
    ``max_key_size`` (bits, multiples of 8); ``max_key_per_request``;
    ``max_key_count``: the most keys of ``key_size`` ``status`` reports as
    stored (the store keeps all it is fed: both KMEs must hold the same
    bytes); ``max_sae_id_count``: additional
    slave SAEs a request may name (0: this store shares keys between two SAEs
    only). ``new_id``: makes key ids (default: random UUID4 strings).
    """

    def __init__(self, kme_id: str, saes: dict[str, str], *, key_size: int = 256,
                 min_key_size: int = 64, max_key_size: int = 1024, max_key_per_request: int = 128,
                 max_key_count: int = 100_000, max_sae_id_count: int = 0,
                 new_id: Callable[[], str] | None = None) -> None:
        for name, v in (("key_size", key_size), ("min_key_size", min_key_size),
                        ("max_key_size", max_key_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % 8:
                raise KmsError(ErrorCode.APP_KMS_BAD_REQUEST,
                               f"KeyStore.{name}: expected a positive multiple of 8 bits, got {v!r}")
        if not min_key_size <= key_size <= max_key_size:
            raise _bad(f"KeyStore: key sizes must satisfy min {min_key_size} <= default "
                       f"{key_size} <= max {max_key_size}")
        self.kme_id = kme_id
        self.saes = dict(saes)
        self.key_size = key_size
        self.min_key_size = min_key_size
        self.max_key_size = max_key_size
        self.max_key_per_request = max_key_per_request
        self.max_key_count = max_key_count
        self.max_sae_id_count = max_sae_id_count
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self._pools: dict[str, _Pool] = {}
        #: keys waiting for their slave SAE: key_ID -> (slave SAE, master SAE, key)
        self._pending: dict[str, tuple[str, str, bytes]] = {}
        #: key ids handed out here as master (never reused)
        self._issued: set[str] = set()

    # ------------------------------------------------------------ key material
    def add_material(self, peer_kme: str, block_id: int, key: bytes) -> int:
        """Take in a block of key shared with ``peer_kme`` (the same bytes and
        ``block_id`` at both KMEs); returns the bytes kept. A block id seen
        before is ignored (0); an odd last byte is dropped (the halves are equal)."""
        if peer_kme == self.kme_id:
            raise _bad(f"{self.kme_id}: key material shared with itself")
        pool = self._pools.setdefault(peer_kme, _Pool())
        if block_id in pool.blocks:
            return 0
        pool.blocks.add(block_id)
        half = len(key) // 2
        first, second = bytes(key[:half]), bytes(key[half:2 * half])
        mine, theirs = (first, second) if self.kme_id < peer_kme else (second, first)
        # (no cap at intake: the two stores must take in exactly the same
        # bytes, and each consumes its halves at its own pace)
        pool.mine += mine
        pool.theirs += theirs
        return 2 * half

    def stored_bytes(self, peer_kme: str) -> int:
        """Bytes this KME can still hand out as master to SAEs of ``peer_kme``."""
        pool = self._pools.get(peer_kme)
        return 0 if pool is None else pool.mine_base + len(pool.mine) - pool.mine_taken

    # ------------------------------------------------------------ checks
    def _local_sae(self, sae: str) -> None:
        if self.saes.get(sae) != self.kme_id:
            raise KmsError(ErrorCode.APP_KMS_UNAUTHORIZED,
                           f"SAE {sae!r} is not attached to KME {self.kme_id}")

    def _remote_kme(self, sae: str) -> str:
        kme = self.saes.get(sae)
        if kme is None:
            raise _bad(f"unknown SAE {sae!r}")
        if kme == self.kme_id:
            raise _bad(f"SAE {sae!r} is attached to this KME ({self.kme_id}): keys are shared "
                       "with an SAE of another KME")
        return kme

    # ------------------------------------------------------------ the three calls
    def status(self, master_sae: str, slave_sae: str) -> dict[str, Any]:
        """``GET /api/v1/keys/{slave_SAE_ID}/status`` asked by ``master_sae``."""
        self._local_sae(master_sae)
        peer = self._remote_kme(slave_sae)
        return {
            "source_KME_ID": self.kme_id, "target_KME_ID": peer,
            "master_SAE_ID": master_sae, "slave_SAE_ID": slave_sae,
            "key_size": self.key_size,
            "stored_key_count": min(self.max_key_count, self.stored_bytes(peer) * 8 // self.key_size),
            "max_key_count": self.max_key_count,
            "max_key_per_request": self.max_key_per_request,
            "max_key_size": self.max_key_size, "min_key_size": self.min_key_size,
            "max_SAE_ID_count": self.max_sae_id_count,
        }

    def enc_keys(self, master_sae: str, slave_sae: str, number: Any = 1, size: Any = None,
                 additional_slave_sae_ids: Any = ()) -> tuple[list[tuple[str, bytes]], Reservation]:
        """``enc_keys``: ``number`` keys of ``size`` bits (default ``key_size``)
        for ``master_sae`` to share with ``slave_sae``. Returns the keys as
        (key_ID, bytes) and the :class:`Reservation` for the peer KME."""
        self._local_sae(master_sae)
        peer = self._remote_kme(slave_sae)
        size = self.key_size if size is None else size
        if isinstance(number, bool) or not isinstance(number, int) \
                or not 1 <= number <= self.max_key_per_request:
            raise _bad(f"number: expected an integer in 1..{self.max_key_per_request}, got {number!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size % 8 \
                or not self.min_key_size <= size <= self.max_key_size:
            raise _bad(f"size: expected a multiple of 8 in {self.min_key_size}..{self.max_key_size} "
                       f"bits, got {size!r}")
        if additional_slave_sae_ids:
            if len(additional_slave_sae_ids) > self.max_sae_id_count:
                raise _bad(f"additional_slave_SAE_IDs: at most {self.max_sae_id_count} allowed")
        pool = self._pools.get(peer)
        need = number * size // 8
        have = self.stored_bytes(peer)
        if have < need:
            raise KmsError(ErrorCode.APP_KMS_NO_KEY,
                           f"KME {self.kme_id} holds {have * 8} bits for {peer}, "
                           f"{need * 8} asked")
        offset = pool.mine_taken
        keys = []
        for i in range(number):
            kid = self._new_id()
            while kid in self._issued:
                kid = self._new_id()
            self._issued.add(kid)
            lo = offset - pool.mine_base + i * (size // 8)
            keys.append((kid, bytes(pool.mine[lo:lo + size // 8])))
        pool.mine_taken += need
        self._trim(pool)
        return keys, Reservation(self.kme_id, peer, master_sae, slave_sae, size, offset,
                                 tuple(k for k, _ in keys))

    def apply(self, r: Reservation) -> None:
        """The peer KME's reservation: keep its keys for its slave SAE."""
        if r.slave_kme != self.kme_id:
            raise _bad(f"reservation for {r.slave_kme} applied at {self.kme_id}")
        pool = self._pools.get(r.master_kme)
        step = r.size // 8
        need = step * len(r.key_ids)
        if pool is None or r.offset != pool.theirs_taken \
                or pool.theirs_base + len(pool.theirs) - pool.theirs_taken < need:
            # the two stores disagree on what was shared: refuse rather than guess
            raise KmsError(ErrorCode.APP_KMS_NO_KEY,
                           f"{self.kme_id}: reservation of {r.master_kme} at offset {r.offset} does "
                           f"not match its material (at {0 if pool is None else pool.theirs_taken})")
        for i, kid in enumerate(r.key_ids):
            lo = r.offset - pool.theirs_base + i * step
            self._pending[kid] = (r.slave_sae, r.master_sae, bytes(pool.theirs[lo:lo + step]))
        pool.theirs_taken += need
        self._trim(pool)

    def can_wait_for(self, r: Reservation) -> bool:
        """Whether :meth:`apply` refused ``r`` only because the material it
        names has not come in yet (its offset is the next one, the bytes are
        short): the peer KME took in a block this KME has not yet."""
        pool = self._pools.get(r.master_kme)
        if pool is None:
            return r.slave_kme == self.kme_id
        return r.slave_kme == self.kme_id and r.offset == pool.theirs_taken and \
            pool.theirs_base + len(pool.theirs) - pool.theirs_taken < (r.size // 8) * len(r.key_ids)

    def dec_keys(self, slave_sae: str, master_sae: str, key_ids: Any) -> list[tuple[str, bytes]]:
        """``dec_keys`` asked by ``slave_sae`` for keys ``master_sae`` got:
        each key once, then forgotten. All or nothing: if any id is unknown,
        delivered already, or not for this SAE, none is given."""
        self._local_sae(slave_sae)
        self._remote_kme(master_sae)
        if not isinstance(key_ids, (list, tuple)) or not key_ids \
                or not all(isinstance(k, str) for k in key_ids):
            raise _bad("key_IDs: expected a non-empty list of key_ID strings")
        if len(key_ids) > self.max_key_per_request or len(set(key_ids)) != len(key_ids):
            raise _bad(f"key_IDs: 1..{self.max_key_per_request} distinct ids")
        for kid in key_ids:
            entry = self._pending.get(kid)
            if entry is None:
                raise _bad(f"key_ID {kid} is unknown here or was delivered already")
            if entry[0] != slave_sae or entry[1] != master_sae:
                raise KmsError(ErrorCode.APP_KMS_UNAUTHORIZED,
                               f"key_ID {kid} is not a key of {master_sae} for {slave_sae}")
        return [(kid, self._pending.pop(kid)[2]) for kid in key_ids]

    @staticmethod
    def _trim(pool: _Pool) -> None:
        """Drop the bytes handed out (no key outlives its delivery here);
        offsets stay absolute through the bases."""
        del pool.mine[:pool.mine_taken - pool.mine_base]
        pool.mine_base = pool.mine_taken
        del pool.theirs[:pool.theirs_taken - pool.theirs_base]
        pool.theirs_base = pool.theirs_taken
