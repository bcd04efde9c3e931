import uuid

import pytest
from gen_common import events, schemas
from pydantic import ValidationError


def test_schemas_directory_matches_the_event_models() -> None:
    assert schemas.main(["schemas", "--check"]) == 0, "run `make schemas` and commit schemas/"


def test_drift_is_detected(tmp_path: pytest.TempPathFactory) -> None:
    assert schemas.main([str(tmp_path)]) == 0
    target = tmp_path / "lot.submitted.v1.json"  # type: ignore[operator]
    target.write_text(target.read_text().replace("lot_seq", "lot_sequence"))
    assert schemas.main([str(tmp_path), "--check"]) == 1


def test_every_event_type_has_a_topic_and_schema() -> None:
    assert set(events.EVENT_TYPES) == set(events.TOPIC_OF)
    assert set(schemas.render()) == {f"{t}.v1.json" for t in events.EVENT_TYPES}


def test_lot_events_are_keyed_by_job_and_position() -> None:
    job = uuid.uuid4()
    lot = events.LotSubmitted(job_id=job, lot_seq=7, lot_id="11-1", images=[], languages=["en"])
    assert events.key_of(lot) == f"{job}:7"
    assert events.key_of(events.JobCancelRequested(job_id=job)) == str(job)


def test_unknown_fields_and_wrong_types_are_rejected() -> None:
    with pytest.raises(ValidationError):
        events.LotSubmitted.model_validate_json(
            b'{"type":"lot.submitted","job_id":"%s","lot_seq":0,"lot_id":"a","images":[],'
            b'"languages":["en"],"surprise":1}' % str(uuid.uuid4()).encode()
        )
    with pytest.raises(ValidationError):
        events.LotSubmitted.model_validate_json(b'{"type":"lot.failed"}')
