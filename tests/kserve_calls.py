"""Calls a server with kserve's InferenceRESTClient, V1 and V2, and prints what the client
returned as JSON (run by tests/test_kserve_client.py with the kserve virtualenv's Python).

    python tests/kserve_calls.py URL IMAGE MODEL
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

from kserve.inference_client import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest


async def calls(url: str, image: bytes, model: str) -> dict:
    encoded = base64.b64encode(image).decode()
    answers: dict = {}
    async with InferenceRESTClient(RESTConfig(protocol="v1")) as v1:
        answers["v1_ready"] = await v1.is_model_ready(url, model)
        answers["v1_missing_ready"] = await _error(v1.is_model_ready(url, "no-such-model"))
        predicted = await v1.infer(url, {"instances": [{"b64": encoded}]}, model_name=model)
        answers["v1_predictions"] = predicted["predictions"]
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as v2:
        answers["v2_live"] = await v2.is_server_live(url)
        answers["v2_ready"] = await v2.is_server_ready(url)
        answers["v2_model_ready"] = await v2.is_model_ready(url, model)
        request = InferRequest(
            model_name=model,
            infer_inputs=[InferInput("image", [1], "BYTES", [encoded])],
            request_id="kserve-1",
        )
        response = await v2.infer(url, request, model_name=model)
        answers["v2_id"] = response.id
        answers["v2_outputs"] = {
            output.name: [v.decode() if isinstance(v, bytes) else v for v in output.data]
            for output in response.outputs
            if output.name in ("labels", "scores")
        }
        answers["v2_error"] = await _error(v2.infer(url, request, model_name="no-such-model"))
    return answers


async def _error(call) -> str:
    try:
        await call
    except Exception as exc:  # the client's own error, as its user sees it
        return f"{type(exc).__name__}: {exc}"
    return "no error"


if __name__ == "__main__":
    url, image, model = sys.argv[1], Path(sys.argv[2]).read_bytes(), sys.argv[3]
    print(json.dumps(asyncio.run(calls(url, image, model))))
