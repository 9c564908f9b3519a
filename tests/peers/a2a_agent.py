"""An A2A agent built on the official `a2a-sdk` (PyPI) server framework, speaking A2A 1.0
(and 0.3 on the same endpoint). Its skills, chosen by the message's `metadata.skill`:

  echo       answers with the message's text
  countdown  streams 3, 2, 1 as artifact chunks 0.1 s apart, then completes
  slow       works for SLOW seconds (status updates every 0.2 s), then answers "slow done"
  inventory  answers a data part: {"items": N} where N is the number of words
  fail       fails, saying why

usage: a2a_agent.py PORT [SLOW]
"""

import asyncio
import sys

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from google.protobuf import struct_pb2
from starlette.applications import Starlette

PORT = int(sys.argv[1])
SLOW = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
URL = f"http://127.0.0.1:{PORT}/"


class Agent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        msg = context.message
        text = context.get_user_input()
        skill = (dict(msg.metadata) if msg.metadata else {}).get("skill", "echo")
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(msg)
            await event_queue.enqueue_event(task)
        up = TaskUpdater(event_queue, task.id, task.context_id)
        say = lambda t: new_text_message(t, context_id=task.context_id, task_id=task.id)
        await up.start_work(say(f"running {skill}"))
        if skill == "countdown":
            for i in (3, 2, 1):
                await up.add_artifact([new_text_part(str(i))], artifact_id="countdown",
                                      name="countdown", append=(i != 3), last_chunk=(i == 1))
                await asyncio.sleep(0.1)
        elif skill == "slow":
            steps = max(1, int(SLOW / 0.2))
            for i in range(steps):
                await asyncio.sleep(0.2)
                await up.update_status(up_state_working(), say(f"step {i + 1} of {steps}"))
            await up.add_artifact([new_text_part("slow done")], name="result")
        elif skill == "inventory":
            data = struct_pb2.Value()
            data.struct_value.update({"items": len(text.split())})
            await up.add_artifact([Part(data=data)], name="inventory")
        elif skill == "fail":
            await up.failed(say("the warehouse is closed"))
            return
        else:
            await up.add_artifact([new_text_part(text)], name="echo")
        await up.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def up_state_working():
    from a2a.types.a2a_pb2 import TaskState
    return TaskState.TASK_STATE_WORKING


def skill(id_, name, desc):
    return AgentSkill(id=id_, name=name, description=desc, tags=["test"], examples=[f"{id_} please"])


card = AgentCard(
    name="Warehouse agent",
    description="A test agent for Switchboard",
    version="1.0.0",
    supported_interfaces=[
        AgentInterface(url=URL, protocol_binding="JSONRPC", protocol_version="1.0"),
        AgentInterface(url=URL, protocol_binding="JSONRPC", protocol_version="0.3"),
    ],
    capabilities=AgentCapabilities(streaming=True, push_notifications=False),
    default_input_modes=["text/plain"],
    default_output_modes=["text/plain"],
    skills=[
        skill("echo", "Echo", "Answers with the message"),
        skill("countdown", "Countdown", "Streams 3, 2, 1"),
        skill("slow", "Slow", "Works a while, then answers"),
        skill("inventory", "Inventory", "Counts the items named"),
        skill("fail", "Fail", "Always fails"),
    ],
)
handler = DefaultRequestHandler(agent_executor=Agent(), task_store=InMemoryTaskStore(), agent_card=card)
app = Starlette(
    routes=create_agent_card_routes(card)
    + create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
)
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
