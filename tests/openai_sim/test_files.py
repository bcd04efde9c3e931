"""The Files API round trip."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI


def test_upload_get_content_delete(client: OpenAI) -> None:
    data = b'{"custom_id": "a"}\n'
    created = client.files.create(file=("in.jsonl", data), purpose="batch")
    assert created.id.startswith("file-")
    assert created.bytes == len(data)
    assert created.purpose == "batch"
    assert created.status == "processed"
    assert created.expires_at is not None
    assert client.files.retrieve(created.id).filename == "in.jsonl"
    assert client.files.content(created.id).read() == data
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_batch_upload_must_be_jsonl(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("in.csv", b"a,b\n"), purpose="batch")
    assert info.value.message.endswith("Invalid file format for Batch API. Must be .jsonl")


def test_expires_after(client: OpenAI) -> None:
    created = client.files.create(
        file=("in.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
