"""A local simulator of the OpenAI Responses, Files, Batches and Models APIs."""
