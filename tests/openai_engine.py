"""A stand-in for vLLM's OpenAI server, for the remote-backend tests: `/v1/models` (the base model and each
LoRA module with its `parent`) and streaming `/v1/completions` on token-id prompts, run by an in-process
rolechat Runtime over the same tiny model. It mirrors the part of vLLM's protocol rolechat uses; the real
engine is exercised by tests/test_vllm_remote.py (slow)."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from rolechat.llm import GenerationParams
from rolechat.llm.generation import GenerationStream


def create_engine_app(runtime: Any, served_name: str) -> Any:
    app = FastAPI()
    app.state.requests = []

    @app.get("/v1/models")
    def models() -> dict:
        data = [{"id": served_name, "object": "model", "parent": None}]
        data += [{"id": n, "object": "model", "parent": served_name} for n in runtime.persona_names() if n != "base"]
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        app.state.requests.append(body)
        known = {served_name, *runtime.persona_names()}
        if body["model"] not in known:
            return JSONResponse({"error": {"message": f"model {body['model']} not found"}}, status_code=404)
        persona = None if body["model"] == served_name else body["model"]
        greedy = body.get("temperature", 1.0) == 0
        params = GenerationParams(
            max_new_tokens=body["max_tokens"],
            temperature=body.get("temperature", 1.0),
            top_p=body.get("top_p", 1.0),
            top_k=max(body.get("top_k", 0), 0),
            repetition_penalty=body.get("repetition_penalty", 1.0),
            seed=body.get("seed"),
        )
        stream = GenerationStream(
            runtime.model,
            runtime.tokenizer,
            body["prompt"],
            params,
            stop_ids=body.get("stop_token_ids", []),
            stop_strings=body.get("stop", []),
            lock=runtime._model_lock,
            context=lambda: runtime._persona_context(persona),
        )
        assert greedy or params.temperature > 0

        async def events():
            # an async generator: when the client hangs up, Starlette cancels it and `finally` ends the
            # generation at once (as vLLM aborts a request whose client is gone). One worker thread per request
            # runs every step of the stream, so closing it never races a step still running.
            created = int(time.time())
            pieces = iter(stream)
            worker = ThreadPoolExecutor(max_workers=1)
            loop = asyncio.get_running_loop()
            try:
                while (piece := await loop.run_in_executor(worker, next, pieces, None)) is not None:
                    choice = {"index": 0, "text": piece, "finish_reason": None}
                    yield f"data: {json.dumps({'created': created, 'choices': [choice]})}\n\n"
            finally:
                stream.cancel()
                worker.submit(pieces.close)  # after the step in flight: releases the model lock
                worker.shutdown(wait=False)
            reason = "length" if stream.stats.completion_tokens >= params.max_new_tokens else "stop"
            yield f"data: {json.dumps({'choices': [{'index': 0, 'text': '', 'finish_reason': reason}]})}\n\n"
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": stream.stats.completion_tokens}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve(app: Any, port: int) -> Any:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return server
