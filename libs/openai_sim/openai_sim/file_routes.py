"""POST /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content, DELETE /v1/files/{id}."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request

from openai_sim.endpoint import Reply
from openai_sim.errors import bad, missing
from openai_sim.state import Sim
from openai_sim.stats import Call

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


async def create_file(request: Request, sim: Sim, call: Call) -> Reply:
    limit = int(sim.cfg["files"]["max_upload_bytes"])
    async with request.form(max_part_size=limit) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        seconds = form.get("expires_after[seconds]")
        if not isinstance(upload, UploadFile):
            raise missing("file")
        if not isinstance(purpose, str):
            raise missing("purpose")
        if purpose not in PURPOSES:
            raise bad(f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
        data = await upload.read()
        filename = upload.filename or "upload"
    if len(data) > limit:
        raise bad(f"File is too large. Maximum size is {limit} bytes.", param="file")
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise bad("Invalid file format for Batch API. Must be .jsonl")
    expires_in = None
    if isinstance(seconds, str):
        if not seconds.isdigit() or not 3600 <= int(seconds) <= 2_592_000:
            raise bad(
                "Invalid 'expires_after.seconds': expected a value between 3600 and 2592000.",
                param="expires_after.seconds",
                code="invalid_value",
            )
        expires_in = int(seconds)
    stored = sim.files.add(filename=filename, purpose=purpose, data=data, expires_in=expires_in)
    return Reply(stored.as_json())


async def get_file(request: Request, sim: Sim, call: Call) -> Reply:
    return Reply(sim.files.get(request.path_params["file_id"]).as_json())


async def file_content(request: Request, sim: Sim, call: Call) -> Reply:
    stored = sim.files.get(request.path_params["file_id"])
    return Reply(None, raw=stored.data, media_type="application/octet-stream")


async def delete_file(request: Request, sim: Sim, call: Call) -> Reply:
    file_id = request.path_params["file_id"]
    sim.files.delete(file_id)
    return Reply({"id": file_id, "object": "file", "deleted": True})
