"""Envelope encryption of account credentials with KMS (data key + AES-256-GCM).

Invariants:

* Plaintext secrets never reach DynamoDB, the API or a log line: the envelope
  holds only the KMS-encrypted data key, the nonce and the ciphertext.
* The KMS encryption context binds an envelope to its tenant and account, so a
  ciphertext copied to another account cannot be decrypted there.
* ``Secret`` wraps plaintext values so that ``repr``/``str`` (and hence any
  accidental log of a structure containing it) prints ``'***'``.
* A decrypted data key is kept in process memory for at most
  :data:`DATA_KEY_CACHE_SECONDS`, keyed by its encrypted blob *and* the
  encryption context, so a warm worker polling an account every few minutes does
  not call KMS each time, and a ciphertext presented under another context still
  goes to KMS (and fails there). A new envelope (new password, reconnect) has a new
  encrypted key, hence a miss.

Follows the AWS KMS "envelope encryption" pattern (GenerateDataKey / Decrypt) and
the AWS Encryption SDK's data key caching (bounded entries and age).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailsync.store import aws


class Secret(str):
    """A string that never shows itself in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        return str.__str__(self)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def encrypt(secrets: dict[str, str], *, key_id: str, context: dict[str, str]) -> dict[str, Any]:
    kms = aws.client("kms")
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    nonce = os.urandom(12)
    aad = json.dumps(context, sort_keys=True).encode()
    ct = AESGCM(dk["Plaintext"]).encrypt(nonce, json.dumps(secrets).encode(), aad)
    return {"v": 1, "key": _b64(dk["CiphertextBlob"]), "nonce": _b64(nonce), "ct": _b64(ct)}


DATA_KEY_CACHE_SECONDS = 300.0
DATA_KEY_CACHE_ENTRIES = 1000
_data_keys: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
_data_keys_lock = threading.Lock()


def _data_key(encrypted: str, context: dict[str, str]) -> bytes:
    entry = (encrypted, json.dumps(context, sort_keys=True))
    now = time.monotonic()
    with _data_keys_lock:
        hit = _data_keys.get(entry)
        if hit is not None and now - hit[0] < DATA_KEY_CACHE_SECONDS:
            return hit[1]
    plain: bytes = aws.client("kms").decrypt(
        CiphertextBlob=base64.b64decode(encrypted), EncryptionContext=context
    )["Plaintext"]
    with _data_keys_lock:
        _data_keys[entry] = (now, plain)
        _data_keys.move_to_end(entry)
        while len(_data_keys) > DATA_KEY_CACHE_ENTRIES:
            _data_keys.popitem(last=False)
    return plain


def forget_data_keys() -> None:
    """Drop every cached data key (tests, and a key rotation drill)."""
    with _data_keys_lock:
        _data_keys.clear()


def decrypt(envelope: dict[str, Any], *, context: dict[str, str]) -> dict[str, Secret]:
    plain_key = _data_key(envelope["key"], context)
    aad = json.dumps(context, sort_keys=True).encode()
    data = AESGCM(plain_key).decrypt(
        base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ct"]), aad
    )
    return {k: Secret(v) for k, v in json.loads(data).items()}
