"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.ingest.st_hooks``): give generated requests
valid signatures so they reach the checks behind authentication.

v1: the body ``signature`` is recomputed over the generated ``lots``. v2: a requests auth object
signs the final prepared request (exact body bytes, path and query) with the client key from
``ST_V2_CLIENT`` / ``ST_V2_KEY_ID`` / ``ST_V2_SECRET`` (hex).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import requests
import schemathesis
from gen_common import request_auth
from gen_common.signing import sign_lots


class V2Signer(requests.auth.AuthBase):
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes)
        path, _, query = (r.path_url or "/").partition("?")
        r.headers.update(
            request_auth.sign(
                bytes.fromhex(os.environ["ST_V2_SECRET"]),
                client_id=os.environ["ST_V2_CLIENT"],
                key_id=os.environ["ST_V2_KEY_ID"],
                method=r.method or "POST",
                path=path,
                query=query,
                body=body,
            )
        )
        return r


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path == "/api/v1/generate-descriptions" and isinstance(case.body, dict):
        if "lots" in case.body and "signature" in case.body:
            with contextlib.suppress(ValueError, RecursionError):
                case.body["signature"] = sign_lots(
                    os.environ["ST_V1_KEY"].encode(), case.body["lots"]
                )
    elif path.startswith("/api/v2/"):
        kwargs["auth"] = V2Signer()
