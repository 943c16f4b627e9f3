"""Estimated cost of model calls from a price table in the settings.

The table maps a model name to its prices per 1000 prompt and completion
tokens, in whatever currency the operator writes (dashboards call it
"cost"). ``"*"`` is the fallback for models not listed; without it an
unknown model costs nothing and :meth:`PriceTable.cost` says so by
returning ``None``, so the caller can count tokens but not money.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Usage

__all__ = ["FALLBACK", "ModelPrice", "PriceTable"]

FALLBACK = "*"


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_1k: float = Field(ge=0)
    completion_per_1k: float = Field(ge=0)


class PriceTable:
    """Model name → price; lookups ignore a ``provider/`` prefix the table does not have."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices = dict(prices or {})

    @property
    def models(self) -> frozenset[str]:
        return frozenset(name for name in self._prices if name != FALLBACK)

    def price(self, model: str | None) -> ModelPrice | None:
        if model:
            found = self._prices.get(model)
            if found is None and "/" in model:
                found = self._prices.get(model.rsplit("/", 1)[1])
            if found is not None:
                return found
        return self._prices.get(FALLBACK)

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """The estimated cost of ``usage`` on ``model``; ``None`` when it has no price."""
        price = self.price(model)
        if price is None:
            return None
        return (usage.prompt_tokens * price.prompt_per_1k
                + usage.completion_tokens * price.completion_per_1k) / 1000.0
