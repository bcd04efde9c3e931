"""The hand-encoded LotSubmitted events and the streamed lots signature equal the reference."""

from __future__ import annotations

import uuid
from typing import Any

from gen_common.events import LotSubmitted
from gen_common.signing import sign_lots
from gen_ingest.lot_checks import Lot
from gen_ingest.submit import events
from gen_ingest.validate import Request, lots_signature
from hypothesis import given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(lots=st.one_of(st.lists(JSON, max_size=5), JSON))
def test_streamed_signature_equals_sign_lots(lots: Any) -> None:
    assert lots_signature(b"test-key", lots) == sign_lots(b"test-key", lots)


def test_encoded_events_decode_to_the_model() -> None:
    job_id = uuid.uuid4()
    req = Request(
        lots=[
            Lot("A-1", ["https://img.example/1.jpg", "https://img.example/ü.jpg"], "Ø\u0001", None),
            Lot(7, [], "", "https://client.example/hook"),
        ],
        languages=["ru", "EN", "zh-Hans"],
        webhook_url="https://client.example/done",
    )
    encoded = list(events(job_id, req, mode="batch", client_id="v1", api_version=1))
    assert [key for key, _ in encoded] == [f"{job_id}:0", f"{job_id}:1"]
    decoded = [LotSubmitted.model_validate_json(value) for _, value in encoded]
    for seq, (event, lot) in enumerate(zip(decoded, req.lots, strict=True)):
        reference = LotSubmitted(
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            job_id=job_id,
            lot_seq=seq,
            lot_id=lot.lot_id,
            images=lot.images,
            additional_info=lot.additional_info,
            languages=req.languages,
            mode="batch",
            total_lots=2,
            client_id="v1",
            api_version=1,
            webhook=lot.webhook,
            job_webhook_url=req.webhook_url,
        )
        assert event == reference
    assert decoded[0].event_id != decoded[1].event_id
