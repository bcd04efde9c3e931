"""Client of the Generation Service: sign, submit, poll, fetch results, verify webhooks.

from gen_client import Client
with Client("http://127.0.0.1:8080", shared_key="...") as client:
    job_id = client.submit_batch(lots, ["en", "ru"])
    print(client.batch_status(job_id)["progress"])
"""

from gen_client.client import DEV_BASE_URL, DEV_SHARED_KEY, Client
from gen_client.errors import ApiError, NotCompleted
from gen_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "DEV_BASE_URL",
    "DEV_SHARED_KEY",
    "ApiError",
    "Client",
    "NotCompleted",
    "WebhookVerificationError",
    "verify_webhook",
]
