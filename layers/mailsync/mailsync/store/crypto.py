"""Envelope encryption of account credentials with KMS (data key + AES-256-GCM).

Invariants:

* Plaintext secrets never reach DynamoDB, the API or a log line: the envelope
  holds only the KMS-encrypted data key, the nonce and the ciphertext.
* The KMS encryption context binds an envelope to its tenant and account, so a
  ciphertext copied to another account cannot be decrypted there.
* ``Secret`` wraps plaintext values so that ``repr``/``str`` (and hence any
  accidental log of a structure containing it) prints ``'***'``.

Follows the AWS KMS "envelope encryption" pattern (GenerateDataKey / Decrypt).
"""

from __future__ import annotations

import base64
import json
import os
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


def decrypt(envelope: dict[str, Any], *, context: dict[str, str]) -> dict[str, Secret]:
    kms = aws.client("kms")
    plain_key = kms.decrypt(CiphertextBlob=base64.b64decode(envelope["key"]), EncryptionContext=context)[
        "Plaintext"
    ]
    aad = json.dumps(context, sort_keys=True).encode()
    data = AESGCM(plain_key).decrypt(
        base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ct"]), aad
    )
    return {k: Secret(v) for k, v in json.loads(data).items()}
