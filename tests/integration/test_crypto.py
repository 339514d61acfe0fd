"""Credential envelopes against moto's KMS: the encryption context binds an envelope to
its account, and decrypted data keys are reused only for the same blob and context."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mailsync.config import get_settings
from mailsync.store import aws as aws_module
from mailsync.store import crypto

pytestmark = pytest.mark.integration

A = {"tenant_id": "t1", "account_id": "acc_a"}
B = {"tenant_id": "t1", "account_id": "acc_b"}


@pytest.fixture
def kms_decrypts(aws):  # noqa: ARG001 - needs the moto fixture
    """The Decrypt requests our code sends to KMS."""
    calls: list[dict] = []
    kms = aws_module.client("kms")
    record = lambda params, **_: calls.append(params)  # noqa: E731
    kms.meta.events.register("provide-client-params.kms.Decrypt", record)
    yield calls
    kms.meta.events.unregister("provide-client-params.kms.Decrypt", record)


def seal(secrets: dict[str, str], context: dict[str, str]) -> dict:
    return crypto.encrypt(secrets, key_id=get_settings().kms_key_id, context=context)


def test_round_trip_and_one_kms_call_per_data_key(kms_decrypts):
    envelope = seal({"imap_password": "geheim"}, A)
    for _ in range(3):  # a warm worker polling the account
        secrets = crypto.decrypt(envelope, context=A)
        assert secrets["imap_password"].reveal() == "geheim" and repr(secrets["imap_password"]) == "'***'"
    assert len(kms_decrypts) == 1

    again = seal({"imap_password": "neu"}, A)  # a new password: a new envelope, a new data key
    assert crypto.decrypt(again, context=A)["imap_password"].reveal() == "neu"
    assert len(kms_decrypts) == 2


def test_an_envelope_copied_to_another_account_is_refused_even_while_cached(kms_decrypts):
    envelope = seal({"imap_password": "geheim"}, A)
    crypto.decrypt(envelope, context=A)  # its data key is now cached under A's context
    with pytest.raises(ClientError) as refused:
        crypto.decrypt(envelope, context=B)
    assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"
    assert len(kms_decrypts) == 2  # B went to KMS


def test_cached_keys_expire_and_are_bounded(kms_decrypts, monkeypatch):
    first, second, third = (seal({"p": str(i)}, A) for i in range(3))
    monkeypatch.setattr(crypto, "DATA_KEY_CACHE_ENTRIES", 2)
    for envelope in (first, second, third):
        crypto.decrypt(envelope, context=A)
    crypto.decrypt(third, context=A)
    assert len(kms_decrypts) == 3  # third is cached
    crypto.decrypt(first, context=A)
    assert len(kms_decrypts) == 4  # first was evicted by the bound

    monkeypatch.setattr(crypto, "DATA_KEY_CACHE_SECONDS", 0.0)
    crypto.decrypt(first, context=A)
    assert len(kms_decrypts) == 5  # too old: asked again
