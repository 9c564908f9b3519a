"""A small FastAPI app whose generated OpenAPI 3.1 document (/openapi.json) the gateway
turns into tools. It counts the requests that reach it (GET /stats, not counted), so tests
can show that a call the gateway refuses never arrives.

  GET  /items/{item_id}?q=...   header X-Request-Id     -> the three back
  POST /items                   body Item, Bearer token -> the item with an id
  GET  /countdown?n=3                                   -> SSE: n, n-1, ... 1, 50 ms apart
  GET  /stats                                           -> {"requests": N, "last": ...}

usage: rest_api.py PORT TOKEN
"""

import asyncio
import sys

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

PORT = int(sys.argv[1])
TOKEN = sys.argv[2]

app = FastAPI(title="Inventory", version="1.0.0")
bearer = HTTPBearer()
seen = {"requests": 0, "last": None}


@app.middleware("http")
async def count(request: Request, call_next):
    if request.url.path not in ("/stats", "/openapi.json"):
        seen["requests"] += 1
        seen["last"] = f"{request.method} {request.url.path}?{request.url.query}"
    return await call_next(request)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Stored(Item):
    id: int
    owner: str


@app.get("/items/{item_id}", summary="Read one item")
def read_item(item_id: int, q: str | None = None, x_request_id: str | None = Header(default=None)):
    return {"item_id": item_id, "q": q, "request_id": x_request_id}


@app.post("/items", summary="Create an item", status_code=201)
def create_item(item: Item, creds: HTTPAuthorizationCredentials = Depends(bearer)) -> Stored:
    if creds.credentials != TOKEN:
        raise HTTPException(status_code=403, detail="wrong token")
    return Stored(id=7, owner="bearer", **item.model_dump())


@app.get("/countdown", summary="Count down, one event at a time")
async def countdown(n: int = 3):
    async def events():
        for i in range(n, 0, -1):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.05)

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/stats", include_in_schema=False)
def stats():
    return seen


uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
