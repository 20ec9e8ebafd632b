"""shared.signing: the notification payload and its EIP-191 signature, as the original signs."""

from __future__ import annotations

import json
import re

import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from shared import signing

# A well-known test key (eth-account documentation) and its address.
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"

# Fixed vector, computed once with the independent implementation below and kept here so
# that a change in the message, the prefix or the encoding of the signature shows at once.
VECTOR_MESSAGE = '"s3cr3t"["did:op:aaa", "did:op:bbb"]"c2d-job-1""did:op:algo"'
VECTOR_SIGNATURE = (
    "0x7b62ecf2c05818250fe19eeb1398f79298f6f7109ea3ad62f29faf32ad9c3751"
    "178331c460db4e2d43421186aa87cff094fda27a9581c22fafb6b411ee5cf2ef1c")


def hand_signed(text: str, private_key: str) -> str:
    """EIP-191 personal-sign without eth-account: keccak of the prefixed text, raw ECDSA."""
    data = text.encode("utf-8")
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)
    signature = keys.PrivateKey(bytes.fromhex(private_key.removeprefix("0x"))) \
        .sign_msg_hash(digest)
    return "0x" + (signature.r.to_bytes(32, "big") + signature.s.to_bytes(32, "big")
                   + bytes([signature.v + 27])).hex()


def vector_payload() -> dict:
    return signing.notification_payload("c2d-job-1", "s3cr3t", ["did:op:aaa", "did:op:bbb"],
                                        "did:op:algo", KEY)


def test_message_is_four_json_dumps_byte_for_byte():
    payload = vector_payload()
    assert signing.notification_message(payload) == VECTOR_MESSAGE


def test_fixed_vector():
    assert vector_payload()["signature"] == VECTOR_SIGNATURE


def test_independent_implementation_agrees():
    assert hand_signed(VECTOR_MESSAGE, KEY) == VECTOR_SIGNATURE
    for text in ["", "x", "null[]\"j\"null", "é ✓ \U0001f600", "a" * 1000]:
        assert signing.personal_sign(text, KEY) == hand_signed(text, KEY)


def test_signer_is_recovered_with_eth_account():
    payload = vector_payload()
    message = signing.notification_message(payload)
    assert Account.from_key(KEY).address == ADDRESS
    assert signing.recover_signer(message, payload["signature"]) == ADDRESS
    assert signing.recover_signer(message + " ", payload["signature"]) != ADDRESS


def test_payload_has_the_original_fields():
    payload = vector_payload()
    assert payload == {"algoDID": "did:op:algo", "jobId": "c2d-job-1", "secret": "s3cr3t",
                       "DID": ["did:op:aaa", "did:op:bbb"], "signature": VECTOR_SIGNATURE}
    assert re.fullmatch(r"0x[0-9a-f]{128}(1b|1c)", payload["signature"])


def test_payload_is_a_copy_of_the_dids():
    dids = ["did:op:aaa"]
    payload = signing.notification_payload("j", "s", dids, None, KEY)
    dids.append("did:op:later")
    assert payload["DID"] == ["did:op:aaa"]
    assert signing.recover_signer(signing.notification_message(payload),
                                  payload["signature"]) == ADDRESS


def test_missing_secret_and_algorithm_sign_as_null():
    payload = signing.notification_payload("job", None, [], None, KEY)
    assert signing.notification_message(payload) == 'null[]"job"null'
    assert payload["signature"] == hand_signed('null[]"job"null', KEY)


def test_non_ascii_values_are_escaped_as_the_original_does():
    payload = signing.notification_payload("job", "sécret ✓", ["did:op:ü"], "did:op:α", KEY)
    message = signing.notification_message(payload)
    assert message == (json.dumps("sécret ✓") + json.dumps(["did:op:ü"]) + json.dumps("job")
                       + json.dumps("did:op:α"))
    assert message.isascii()
    assert payload["signature"] == hand_signed(message, KEY)


def test_no_key_no_signature():
    payload = signing.notification_payload("job", "s", ["did:op:a"], "did:op:b", None)
    assert payload["signature"] is None
    assert set(payload) == {"algoDID", "jobId", "secret", "DID", "signature"}


@pytest.mark.parametrize("key", [KEY, KEY[2:]])
def test_key_with_or_without_prefix(key):
    assert signing.personal_sign(VECTOR_MESSAGE, key) == VECTOR_SIGNATURE
