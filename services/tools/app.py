"""Wiring of the tools service: registry, executor, ledger, consumers. No logic here.

Start order (see :class:`shared.service.ServiceRuntime`): ledger indexes,
then every agent definition is read from the compacted topic and every MCP
server is connected (its tools registered), and only then do tool calls
start to flow, so the first call already meets the full registry and every
agent's allowlist.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.topics import AGENTS, TOOLS_CALLS
from services.tools.executor import Executor
from services.tools.handlers import CallHandler
from services.tools.mcp_bridge import McpBridge
from services.tools.metrics import ToolMetrics
from services.tools.registry import ToolRegistry, discover
from services.tools.settings import ToolsSettings
from services.tools.store import ToolCallStore
from shared.agent_registry import AgentRegistry
from shared.audit import AuditEmitter
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["ToolsApp", "build", "build_app", "build_registry"]

SERVICE = "tools"


@dataclass(frozen=True)
class ToolsApp:
    """The runtime plus the parts tests and the CLI reach into."""

    runtime: ServiceRuntime
    registry: ToolRegistry
    agents: AgentRegistry
    executor: Executor
    handler: CallHandler
    store: ToolCallStore
    mcp: McpBridge


def build_registry(settings: ToolsSettings) -> ToolRegistry:
    """Local tools from the configured modules (MCP tools join at start)."""
    return discover(settings.modules, config=settings.config_by_module())


def build_app(
    settings: ToolsSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
    registry: ToolRegistry | None = None,
) -> ToolsApp:
    runtime = ServiceRuntime(SERVICE, kafka=kafka, mongo=mongo, http_host=http_host,
                             http_port=settings.http_port if http_port is None else http_port)
    registry = registry if registry is not None else build_registry(settings)
    agents = AgentRegistry()
    store = ToolCallStore(runtime.db)
    executor = Executor(registry, global_concurrency=settings.global_concurrency,
                        breaker_failure_threshold=settings.breaker_failure_threshold,
                        breaker_reset_timeout=settings.breaker_reset_s)
    handler = CallHandler(
        registry=registry, executor=executor, agents=agents, store=store,
        publisher=runtime.publisher, audit=AuditEmitter(runtime.publisher, SERVICE),
        metrics=ToolMetrics(runtime.metrics, registry),
        inline_limit=settings.inline_result_limit, max_result_bytes=settings.max_result_bytes,
    )
    bridge = McpBridge(settings.mcp_servers)

    async def load_agents() -> None:
        await agents.load(kafka, timeout_s=settings.agents_load_timeout_s)

    async def connect_mcp() -> None:
        await bridge.start(registry)

    runtime.indexes(ToolCallStore.INDEXES)
    runtime.on_start(load_agents)
    runtime.on_start(connect_mcp)
    runtime.on_stop(bridge.stop)
    runtime.consume(AGENTS, agents.handle, group=None)
    # No processed-message ledger here: the call ledger (keyed by call_id) is the natural
    # idempotency key and catches strictly more duplicates, at two fewer writes per call.
    runtime.consume(TOOLS_CALLS, handler.handle, dedupe=False, group=settings.consumer_group or "",
                    concurrency=settings.consumer_concurrency)
    return ToolsApp(runtime, registry, agents, executor, handler, store, bridge)


def build(
    settings: ToolsSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> ServiceRuntime:
    return build_app(settings, kafka, mongo, http_host=http_host, http_port=http_port).runtime
