"""Ocean Aquarius and Provider: DDOs, endpoint discovery, signed download URLs.

The download signature is what the Ocean Provider verifies (its
`validate_download_signature`): the message is `f"{did}{nonce}"`, hashed with
keccak-256, and the 32-byte hash is EIP-191 personal-signed (prefix
"\\x19Ethereum Signed Message:\\n32"). The provider refuses a nonce lower than
the last one it stored for the address and cannot store the same one twice, so
nonces here are milliseconds (as Ocean's own pod) and strictly increasing.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from functions.configure.fetch import Fetcher, FetchError


def download_signature(did: str, nonce: int | str, private_key: str) -> str:
    """The `signature` URL parameter of a provider download, 0x-prefixed."""
    # Imported here: eth_account takes ~0.7 s to import and only remote inputs sign.
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from eth_utils import keccak

    digest = keccak(text=f"{did}{nonce}")
    signed = Account.sign_message(encode_defunct(primitive=digest), private_key=private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


class Provider:
    """Talks to Aquarius and Ocean Providers on behalf of the operator's address."""

    def __init__(self, fetcher: Fetcher, private_key: str | None):
        self.fetcher = fetcher
        self.private_key = private_key
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._last_nonce = 0

    @functools.cached_property
    def address(self) -> str | None:
        """The operator's address (consumerAddress), computed when first needed."""
        if not self.private_key:
            return None
        from eth_account import Account

        return Account.from_key(self.private_key).address

    def ddo(self, metadata_uri: str, did: str) -> dict[str, Any]:
        """The DDO of `did` from Aquarius at `metadata_uri`."""
        url = f"{metadata_uri.rstrip('/')}/api/aquarius/assets/ddo/{quote(did, safe=':')}"
        ddo = self.fetcher.json(url)
        if not isinstance(ddo, dict):
            raise FetchError(f"the DDO of {did} is not a JSON object")
        return ddo

    @staticmethod
    def service(ddo: dict[str, Any], service_id: str) -> dict[str, Any]:
        """The service `service_id` of a DDO (v4 `services[]`)."""
        for service in ddo.get("services") or []:
            if isinstance(service, dict) and str(service.get("id")) == str(service_id):
                if not isinstance(service.get("serviceEndpoint"), str):
                    raise FetchError(f"service {service_id} of {ddo.get('id')} has no "
                                     "serviceEndpoint")
                return service
        raise FetchError(f"service {service_id} not found in the DDO of {ddo.get('id')}")

    def _endpoint(self, provider_url: str, name: str) -> tuple[str, str]:
        """(method, absolute URL) of a provider service endpoint, from `GET <provider>`."""
        if provider_url not in self._endpoints:
            info = self.fetcher.json(provider_url)
            endpoints = info.get("serviceEndpoints") if isinstance(info, dict) else None
            if not isinstance(endpoints, dict):
                raise FetchError("the provider announces no serviceEndpoints")
            self._endpoints[provider_url] = endpoints
        entry = self._endpoints[provider_url].get(name)
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and
                all(isinstance(part, str) for part in entry)):
            raise FetchError(f"the provider announces no {name!r} endpoint")
        method, path = entry
        return method.upper(), provider_url.rstrip("/") + "/" + path.lstrip("/")

    def file_count(self, provider_url: str, did: str, service_id: str) -> int:
        """How many files the service has (the provider's `fileinfo`)."""
        method, url = self._endpoint(provider_url, "fileinfo")
        files = self.fetcher.json(url, method=method, body={"did": did, "serviceId": service_id})
        if not isinstance(files, list) or not files:
            raise FetchError(f"the provider lists no files for {did} service {service_id}")
        return len(files)

    def _next_nonce(self, provider_url: str) -> int:
        if self._last_nonce == 0:
            self._last_nonce = self._stored_nonce(provider_url)
        self._last_nonce = max(int(time.time() * 1000), self._last_nonce + 1)
        return self._last_nonce

    def _stored_nonce(self, provider_url: str) -> int:
        """The provider's last nonce for our address; 0 when it does not say."""
        try:
            method, url = self._endpoint(provider_url, "nonce")
            answer = self.fetcher.json(f"{url}?{urlencode({'userAddress': self.address})}")
            return int(float(answer.get("nonce") or 0))
        except (FetchError, AttributeError, TypeError, ValueError):
            return 0

    def download_url(self, provider_url: str, did: str, service_id: str, tx_id: str,
                     file_index: int, userdata: Any = None) -> Callable[[], str]:
        """A maker of signed download URLs: each call signs with a fresh nonce."""
        if not self.private_key:
            raise FetchError("OPERATOR_PRIVATE_KEY is needed to download through a provider")
        _, endpoint = self._endpoint(provider_url, "download")

        def make() -> str:
            nonce = self._next_nonce(provider_url)
            params = {
                "fileIndex": file_index, "documentId": did, "transferTxId": tx_id,
                "serviceId": service_id, "consumerAddress": self.address, "nonce": nonce,
                "signature": download_signature(did, nonce, self.private_key),
            }
            if userdata:
                params["userdata"] = json.dumps(userdata)
            return f"{endpoint}?{urlencode(params)}"

        return make
