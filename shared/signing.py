"""EIP-191 signatures: notification payloads and any other operator-signed text.

The notification payload and its signed message are byte for byte what the
original operator-engine builds, so existing receivers keep verifying.
"""

from __future__ import annotations

import json
from typing import Any

# eth_account is imported where it is used: it takes ~0.7 s, paid only when signing.


def personal_sign(text: str, private_key: str) -> str:
    """EIP-191 personal-sign of `text`, as a 0x-prefixed hex string."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    signed = Account.sign_message(encode_defunct(text=text), private_key=private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(text: str, signature: str) -> str:
    """The address that produced `signature` over `text`."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    return Account.recover_message(encode_defunct(text=text), signature=signature)


def notification_message(payload: dict[str, Any]) -> str:
    """The text the original engine signs: four JSON dumps, concatenated."""
    return (json.dumps(payload["secret"]) + json.dumps(payload["DID"])
            + json.dumps(payload["jobId"]) + json.dumps(payload["algoDID"]))


def notification_payload(job_id: str, secret: str | None, dids: list[str],
                         algo_did: str | None, private_key: str | None) -> dict[str, Any]:
    """`{algoDID, jobId, secret, DID, signature}`; signature is None without a key."""
    payload: dict[str, Any] = {"algoDID": algo_did, "jobId": job_id, "secret": secret,
                               "DID": list(dids)}
    message = notification_message(payload)
    payload["signature"] = personal_sign(message, private_key) if private_key else None
    return payload
